/* The vicreg C API as an application uses it, run by test/native.test.ts: a context on the
 * application's own device, backward with an upstream scale and accumulation, and every typed failure
 * leaving the context usable. Writes the views and gradients as .npy files into the directory given,
 * and prints one JSON object for the test to check against its float64 reference.
 *   api_test KERNELS_DIR OUT_DIR */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/npy.h"
#include "vicreg.h"

#define N 37
#define D 70

typedef struct request { volatile int done; WGPUAdapter adapter; WGPUDevice device; } request;

static void on_adapter(WGPURequestAdapterStatus status, WGPUAdapter adapter, WGPUStringView message, void *userdata1, void *userdata2) {
  (void)message; (void)userdata2;
  request *r = userdata1;
  r->adapter = status == WGPURequestAdapterStatus_Success ? adapter : NULL;
  r->done = 1;
}

static void on_device(WGPURequestDeviceStatus status, WGPUDevice device, WGPUStringView message, void *userdata1, void *userdata2) {
  (void)message; (void)userdata2;
  request *r = userdata1;
  r->device = status == WGPURequestDeviceStatus_Success ? device : NULL;
  r->done = 1;
}

static void wait_for(WGPUInstance instance, request *r) {
  while (!r->done) wgpuInstanceProcessEvents(instance);
}

static WGPUBuffer buffer(WGPUDevice device, WGPUBufferUsage usage, uint64_t bytes, const float *data) {
  WGPUBufferDescriptor descriptor = WGPU_BUFFER_DESCRIPTOR_INIT;
  descriptor.size = bytes;
  descriptor.usage = usage;
  WGPUBuffer b = wgpuDeviceCreateBuffer(device, &descriptor);
  if (data) {
    WGPUQueue queue = wgpuDeviceGetQueue(device);
    wgpuQueueWriteBuffer(queue, b, 0, data, bytes);
    wgpuQueueRelease(queue);
  }
  return b;
}

static void drop(WGPUBuffer b) {
  wgpuBufferDestroy(b);
  wgpuBufferRelease(b);
}

/* A deterministic batch: B a noisy copy of A, features of different scales. */
static void views(float *a, float *b) {
  unsigned state = 12345;
  for (int i = 0; i < N * D; i++) {
    state = state * 1103515245u + 12345u;
    float u = (float)((state >> 8) & 0xffff) / 65536.0f - 0.5f;
    state = state * 1103515245u + 12345u;
    float w = (float)((state >> 8) & 0xffff) / 65536.0f - 0.5f;
    a[i] = (0.5f + (float)(i % D) / D) * u;
    b[i] = a[i] + 0.1f * w;
  }
}

static void report(const char *name, vicreg_status status, vicreg_context *vic, int *first) {
  printf("%s\"%s\":{\"status\":%d,\"message\":\"", *first ? "" : ",", name, (int)status);
  for (const char *c = vicreg_message(vic); *c; c++) {
    if (*c == '"' || *c == '\\') putchar('\\');
    putchar(*c);
  }
  printf("\"}");
  *first = 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: api_test KERNELS_DIR OUT_DIR\n");
    return 2;
  }
  /* The application's instance and device. */
  WGPUInstance instance = wgpuCreateInstance(NULL);
  request r = {0};
  WGPURequestAdapterCallbackInfo adapter_info = WGPU_REQUEST_ADAPTER_CALLBACK_INFO_INIT;
  adapter_info.mode = WGPUCallbackMode_AllowProcessEvents;
  adapter_info.callback = on_adapter;
  adapter_info.userdata1 = &r;
  wgpuInstanceRequestAdapter(instance, NULL, adapter_info);
  wait_for(instance, &r);
  WGPUAdapter adapter = r.adapter;
  r.done = 0;
  WGPURequestDeviceCallbackInfo device_info = WGPU_REQUEST_DEVICE_CALLBACK_INFO_INIT;
  device_info.mode = WGPUCallbackMode_AllowProcessEvents;
  device_info.callback = on_device;
  device_info.userdata1 = &r;
  wgpuAdapterRequestDevice(adapter, NULL, device_info);
  wait_for(instance, &r);
  WGPUDevice device = r.device;
  if (!device) {
    fprintf(stderr, "api_test: no device\n");
    return 1;
  }

  vicreg_options options;
  vicreg_options_init(&options);
  options.kernels_dir = argv[1];
  options.preset = "official";
  options.lambda = 3.5;
  options.mu = 7;
  options.nu = 0.3;
  options.gamma = 0.7;
  options.eps = 1e-3;
  vicreg_context *vic;
  vicreg_status created = vicreg_create(&options, instance, device, &vic);
  if (created != VICREG_OK) {
    fprintf(stderr, "api_test: %s\n", vicreg_message(vic));
    return 1;
  }

  static float a[N * D], b[N * D], out[N * D];
  views(a, b);
  const WGPUBufferUsage storage = WGPUBufferUsage_Storage | WGPUBufferUsage_CopyDst | WGPUBufferUsage_CopySrc;
  WGPUBuffer view_a = buffer(device, storage, sizeof a, a), view_b = buffer(device, storage, sizeof b, b);
  WGPUBuffer grad_a = buffer(device, storage, sizeof a, NULL), grad_b = buffer(device, storage, sizeof b, NULL);
  WGPUBuffer small = buffer(device, storage, sizeof a / 2, NULL), uniform = buffer(device, WGPUBufferUsage_Uniform | WGPUBufferUsage_CopyDst, sizeof a, NULL);

  int first = 1;
  printf("{\"n\":%d,\"d\":%d,\"adapter\":\"%s\",", N, D, vicreg_adapter_name(vic));
  printf("\"checks\":{");
  /* Failures first: each must leave the context usable. */
  report("backwardFirst", vicreg_backward(vic, grad_a, grad_b, 1, 0), vic, &first);
  report("oneRow", vicreg_forward(vic, view_a, view_b, 1, D, NULL), vic, &first);
  report("smallView", vicreg_forward(vic, small, view_b, N, D, NULL), vic, &first);
  report("uniformView", vicreg_forward(vic, view_a, uniform, N, D, NULL), vic, &first);
  vicreg_terms terms;
  report("forward", vicreg_forward(vic, view_a, view_b, N, D, &terms), vic, &first);
  report("smallGradient", vicreg_backward(vic, small, grad_b, 1, 0), vic, &first);
  report("sameGradients", vicreg_backward(vic, grad_a, grad_a, 1, 0), vic, &first);
  /* gradA = -2.5 g, then += 1.5 g: -1 g in all. */
  report("backward", vicreg_backward(vic, grad_a, grad_b, -2.5f, 0), vic, &first);
  report("accumulate", vicreg_backward(vic, grad_a, grad_b, 1.5f, 1), vic, &first);
  char path[1024], error[256];
  for (int v = 0; v < 2; v++) {
    vicreg_read(vic, v == 0 ? grad_a : grad_b, 0, sizeof out, out);
    snprintf(path, sizeof path, "%s/%s", argv[2], v == 0 ? "grad_a.npy" : "grad_b.npy");
    if (npy_write(path, out, 0, N, D, error, sizeof error) != 0) fprintf(stderr, "api_test: %s\n", error);
  }
  for (int v = 0; v < 2; v++) {
    snprintf(path, sizeof path, "%s/%s", argv[2], v == 0 ? "a.npy" : "b.npy");
    if (npy_write(path, v == 0 ? a : b, 0, N, D, error, sizeof error) != 0) fprintf(stderr, "api_test: %s\n", error);
  }
  vicreg_plan plan = vicreg_last_plan(vic);
  printf("},\"loss\":%.9g,\"invariance\":%.9g,\"variance\":%.9g,\"covariance\":%.9g,\"form\":\"%s\",\"variant\":\"%s\",",
         terms.loss, terms.invariance, terms.variance, terms.covariance, plan.form, plan.variant);

  /* A NaN, located; then the context still computes. */
  float saved = a[5 * D + 11];
  a[5 * D + 11] = NAN;
  WGPUQueue queue = wgpuDeviceGetQueue(device);
  wgpuQueueWriteBuffer(queue, view_a, 0, a, sizeof a);
  vicreg_status non_finite = vicreg_forward(vic, view_a, view_b, N, D, NULL);
  vicreg_non_finite where = vicreg_last_non_finite(vic);
  printf("\"nonFinite\":{\"status\":%d,\"view\":\"%c\",\"row\":%u,\"column\":%u},", (int)non_finite, where.view, where.row, where.column);
  a[5 * D + 11] = saved;
  wgpuQueueWriteBuffer(queue, view_a, 0, a, sizeof a);
  wgpuQueueRelease(queue);
  vicreg_terms again;
  vicreg_status recovered = vicreg_forward(vic, view_a, view_b, N, D, &again);
  printf("\"recovered\":{\"status\":%d,\"loss\":%.9g}}\n", (int)recovered, again.loss);

  /* Bad options: a context that reports why, destroyed as any other. */
  vicreg_options bad = options;
  bad.preset = "torch";
  vicreg_context *refused;
  vicreg_status option_status = vicreg_create(&bad, instance, device, &refused);
  fprintf(stderr, "bad preset: %d %s\n", (int)option_status, vicreg_message(refused));
  vicreg_destroy(refused);

  drop(view_a);
  drop(view_b);
  drop(grad_a);
  drop(grad_b);
  drop(small);
  drop(uniform);
  vicreg_destroy(vic);
  wgpuDeviceDestroy(device);
  wgpuDeviceRelease(device);
  wgpuAdapterRelease(adapter);
  wgpuInstanceProcessEvents(instance);
  wgpuInstanceRelease(instance);
  return option_status == VICREG_ERROR_OPTION ? 0 : 1;
}
