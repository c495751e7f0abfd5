/* vicreg-native: the VICReg loss of two .npy files, and optionally its gradients, through the vicreg C
 * library; the same contract as the package's `vicreg-wgsl loss`. Exit status 0 on success, 2 on bad
 * input or options (one line on stderr), 1 on a device failure. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "npy.h"
#include "vicreg.h"

static const char USAGE[] =
  "usage: vicreg-native loss A.npy B.npy [--preset paper|official] [--lambda X] [--mu X] [--nu X]\n"
  "                          [--gamma X] [--eps X] [--form auto|primal|dual] [--variant V]\n"
  "                          [--grad-out DIR] [--grad-dtype float32|float16] [--kernels DIR]\n"
  "                          [--max-binding BYTES] [--repeat N] [--json]\n"
  "The loss of two n x d views (float16, float32 or float64 .npy, C order) on a WebGPU device, through the\n"
  "vicreg C library. --grad-out DIR also runs backward and writes DIR/grad_a.npy and DIR/grad_b.npy\n"
  "(in the views' type, or --grad-dtype's);\n"
  "--json prints one JSON object as the last line of stdout. --kernels DIR: the kernels and their\n"
  "manifest (default: $VICREG_KERNELS, else ../../kernels from this program's folder). --max-binding\n"
  "caps the bytes of one buffer binding below the device's limit. --repeat N then times N more forward +\n"
  "backward calls (gradients read back) and reports their median as repeatMs. Exit status: 0 on\n"
  "success, 2 on bad input (one line on stderr), 1 on a device failure.\n";

/* Dawn prints these two lines to stderr (fprintf, no switch) when it clamps an adapter's limits, as it
 * does for lavapipe's; the program's stderr is for its own one-line errors. */
static const char *const DAWN_CLAMP_WARNINGS[] = {
  "Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from ",
  "Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from ",
};

static int bad_input(const char *message) {
  fprintf(stderr, "vicreg-native: %s\n", message);
  return 2;
}

static int parse_number(const char *text, double *out) {
  char *end;
  errno = 0;
  *out = strtod(text, &end);
  return *text != '\0' && *end == '\0' && errno == 0 && isfinite(*out) ? 0 : -1;
}

/* `text` as a JSON string's contents (quotes and backslashes escaped, control characters dropped). */
static void print_json_text(const char *text) {
  for (const char *c = text; *c; c++) {
    if (*c == '"' || *c == '\\') printf("\\%c", *c);
    else if ((unsigned char)*c >= 0x20) putchar(*c);
  }
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Runs vicreg_create with stderr sent to a temporary file, then passes on every line of it except
 * Dawn's two clamp warnings. */
static vicreg_status create_quietly(const vicreg_options *options, vicreg_context **vic) {
  fflush(stderr);
  FILE *capture = tmpfile();
  int saved = capture ? dup(STDERR_FILENO) : -1;
  if (saved < 0 || dup2(fileno(capture), STDERR_FILENO) < 0) {
    if (capture) fclose(capture);
    if (saved >= 0) close(saved);
    return vicreg_create(options, NULL, NULL, vic);
  }
  vicreg_status status = vicreg_create(options, NULL, NULL, vic);
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  rewind(capture);
  char line[1024];
  while (fgets(line, sizeof line, capture)) {
    int dropped = 0;
    for (size_t i = 0; i < sizeof DAWN_CLAMP_WARNINGS / sizeof *DAWN_CLAMP_WARNINGS; i++) {
      if (strncmp(line, DAWN_CLAMP_WARNINGS[i], strlen(DAWN_CLAMP_WARNINGS[i])) == 0) dropped = 1;
    }
    if (!dropped) fputs(line, stderr);
  }
  fclose(capture);
  return status;
}

/* The kernels directory: --kernels, $VICREG_KERNELS, or ../../kernels beside this program (native/build/). */
static const char *kernels_dir(const char *option, char *buffer, size_t size) {
  if (option) return option;
  const char *env = getenv("VICREG_KERNELS");
  if (env && *env) return env;
  char exe[PATH_MAX];
  ssize_t length = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (length <= 0) return "kernels";
  exe[length] = '\0';
  snprintf(buffer, size, "%s/../../kernels", dirname(exe));
  return buffer;
}

/* The bytes of n x d values in a buffer: float32, or float16 in whole 4-byte words. */
static size_t buffer_bytes(int half, uint32_t n, uint32_t d) {
  size_t count = (size_t)n * d;
  return half ? 4 * ((count + 1) / 2) : 4 * count;
}

/* A buffer of `bytes` on the context's device, holding `data` (bytes of it) where given. */
static WGPUBuffer upload(vicreg_context *vic, const void *data, size_t bytes) {
  WGPUBufferDescriptor descriptor = WGPU_BUFFER_DESCRIPTOR_INIT;
  descriptor.size = bytes;
  descriptor.usage = WGPUBufferUsage_Storage | WGPUBufferUsage_CopyDst | WGPUBufferUsage_CopySrc;
  WGPUBuffer buffer = wgpuDeviceCreateBuffer(vicreg_device(vic), &descriptor);
  if (data) {
    WGPUQueue queue = wgpuDeviceGetQueue(vicreg_device(vic));
    wgpuQueueWriteBuffer(queue, buffer, 0, data, descriptor.size);
    wgpuQueueRelease(queue);
  }
  return buffer;
}

static void release(WGPUBuffer buffer) {
  if (!buffer) return;
  wgpuBufferDestroy(buffer);
  wgpuBufferRelease(buffer);
}

static int compare_doubles(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* --repeat: the median of `count` more forward + backward calls, gradients read back into `grads`. */
static vicreg_status time_repeats(vicreg_context *vic, WGPUBuffer buffers[4], uint32_t n, uint32_t d, unsigned char *grads, size_t grad_bytes, int count, double *median) {
  double *times = malloc((size_t)count * sizeof *times);
  if (!times) return VICREG_ERROR_MEMORY;
  vicreg_status status = VICREG_OK;
  for (int r = 0; r < count && status == VICREG_OK; r++) {
    double start = now_ms();
    status = vicreg_forward(vic, buffers[0], buffers[1], n, d, NULL);
    if (status == VICREG_OK) status = vicreg_backward(vic, buffers[2], buffers[3], 1.0f, 0);
    for (int v = 0; v < 2 && status == VICREG_OK; v++) status = vicreg_read(vic, buffers[2 + v], 0, grad_bytes, grads + v * grad_bytes);
    times[r] = now_ms() - start;
  }
  qsort(times, (size_t)count, sizeof *times, compare_doubles);
  *median = times[count / 2];
  free(times);
  return status;
}

static void free_matrix(npy_matrix *m) {
  free(m->data);
  free(m->half);
}

static int exit_code(vicreg_status status) {
  return status == VICREG_ERROR_DEVICE || status == VICREG_ERROR_MEMORY ? 1 : 2;
}

int main(int argc, char **argv) {
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(USAGE, stdout);
    return 0;
  }
  if (argc < 2 || strcmp(argv[1], "loss") != 0) return bad_input(argc < 2 ? "missing command (loss); see --help" : "unknown command (expected loss); see --help");
  vicreg_options options;
  vicreg_options_init(&options);
  const char *paths[2] = {NULL, NULL}, *grad_dir = NULL, *kernels_option = NULL;
  int json = 0, positional = 0, repeat = 0;
  for (int i = 2; i < argc; i++) {
    const char *arg = argv[i];
    double *number = strcmp(arg, "--lambda") == 0 ? &options.lambda : strcmp(arg, "--mu") == 0 ? &options.mu : strcmp(arg, "--nu") == 0 ? &options.nu
                   : strcmp(arg, "--gamma") == 0 ? &options.gamma : strcmp(arg, "--eps") == 0 ? &options.eps : NULL;
    const char **text = strcmp(arg, "--preset") == 0 ? &options.preset : strcmp(arg, "--form") == 0 ? &options.form : strcmp(arg, "--variant") == 0 ? &options.variant
                      : strcmp(arg, "--grad-out") == 0 ? &grad_dir : strcmp(arg, "--kernels") == 0 ? &kernels_option
                      : strcmp(arg, "--grad-dtype") == 0 ? &options.grad_dtype : NULL;
    char message[160];
    if (number || text) {
      if (i + 1 >= argc) {
        snprintf(message, sizeof message, "option %s needs a value", arg);
        return bad_input(message);
      }
      const char *value = argv[++i];
      if (number && parse_number(value, number) != 0) {
        snprintf(message, sizeof message, "option %s needs a number, got '%s'", arg, value);
        return bad_input(message);
      }
      if (text) *text = value;
    } else if (strcmp(arg, "--max-binding") == 0 && i + 1 < argc) {
      double bytes;
      if (parse_number(argv[++i], &bytes) != 0 || bytes < 4 || bytes != floor(bytes)) {
        snprintf(message, sizeof message, "option --max-binding needs a whole number of bytes, got '%s'", argv[i]);
        return bad_input(message);
      }
      options.max_binding_size = (uint64_t)bytes;
    } else if (strcmp(arg, "--repeat") == 0 && i + 1 < argc) {
      double count;
      if (parse_number(argv[++i], &count) != 0 || count < 1 || count > 10000 || count != floor(count)) {
        snprintf(message, sizeof message, "option --repeat needs a count from 1 to 10000, got '%s'", argv[i]);
        return bad_input(message);
      }
      repeat = (int)count;
    } else if (strcmp(arg, "--json") == 0) {
      json = 1;
    } else if (strncmp(arg, "--", 2) == 0) {
      snprintf(message, sizeof message, "unknown option '%s'; see --help", arg);
      return bad_input(message);
    } else if (positional < 2) {
      paths[positional++] = arg;
    } else {
      return bad_input("loss takes two .npy files; see --help");
    }
  }
  if (positional < 2) return bad_input("loss needs two .npy files, A and B; see --help");

  char error[512];
  npy_matrix a, b;
  if (npy_read(paths[0], &a, error, sizeof error) != 0) return bad_input(error);
  if (npy_read(paths[1], &b, error, sizeof error) != 0) {
    free_matrix(&a);
    return bad_input(error);
  }
  error[0] = '\0';
  if (a.rows != b.rows || a.columns != b.columns) {
    snprintf(error, sizeof error, "the two views must have the same shape, got %ux%u and %ux%u", a.rows, a.columns, b.rows, b.columns);
  } else if (!a.half != !b.half) {
    snprintf(error, sizeof error, "%s is %s but %s is %s; the two views must have the same dtype (float64 counts as float32)", paths[0], a.half ? "float16" : "float32",
             paths[1], b.half ? "float16" : "float32");
  } else if (grad_dir && mkdir(grad_dir, 0777) != 0 && errno != EEXIST) {
    snprintf(error, sizeof error, "cannot create --grad-out %s: %s", grad_dir, strerror(errno));
  }
  if (error[0]) {
    free_matrix(&a);
    free_matrix(&b);
    return bad_input(error);
  }
  int half_views = a.half != NULL;
  options.dtype = half_views ? "float16" : "float32";
  const char *grad_dtype = options.grad_dtype ? options.grad_dtype : options.dtype;
  int half_grads = strcmp(grad_dtype, "float16") == 0;
  uint32_t n = a.rows, d = a.columns;
  char kernels[PATH_MAX + 32];
  options.kernels_dir = kernels_dir(kernels_option, kernels, sizeof kernels);

  vicreg_context *vic = NULL;
  WGPUBuffer buffers[4] = {NULL, NULL, NULL, NULL};
  unsigned char *grads = NULL;
  size_t view_bytes = buffer_bytes(half_views, n, d), grad_bytes = buffer_bytes(half_grads, n, d);
  int code = 0;
  double start = now_ms(), forward_ms = 0, backward_ms = 0;
  vicreg_status status = create_quietly(&options, &vic);
  vicreg_terms terms = {0};
  if (status == VICREG_OK) {
    buffers[0] = upload(vic, half_views ? (const void *)a.half : a.data, view_bytes);
    buffers[1] = upload(vic, half_views ? (const void *)b.half : b.data, view_bytes);
    start = now_ms();
    status = vicreg_forward(vic, buffers[0], buffers[1], n, d, &terms);
    forward_ms = now_ms() - start;
  }
  if (status == VICREG_OK && grad_dir) {
    buffers[2] = upload(vic, NULL, grad_bytes);
    buffers[3] = upload(vic, NULL, grad_bytes);
    start = now_ms();
    status = vicreg_backward(vic, buffers[2], buffers[3], 1.0f, 0);
    if (status == VICREG_OK && !(grads = malloc(2 * grad_bytes))) status = VICREG_ERROR_MEMORY;
    for (int v = 0; v < 2 && status == VICREG_OK; v++) status = vicreg_read(vic, buffers[2 + v], 0, grad_bytes, grads + v * grad_bytes);
    backward_ms = now_ms() - start;
  }
  double repeat_ms = 0;
  if (status == VICREG_OK && grad_dir && repeat > 0) status = time_repeats(vic, buffers, n, d, grads, grad_bytes, repeat, &repeat_ms);
  char grad_paths[2][PATH_MAX];
  if (status == VICREG_OK && grad_dir) {
    for (int v = 0; v < 2 && code == 0; v++) {
      snprintf(grad_paths[v], sizeof grad_paths[v], "%s/%s", grad_dir, v == 0 ? "grad_a.npy" : "grad_b.npy");
      if (npy_write(grad_paths[v], grads + v * grad_bytes, half_grads, n, d, error, sizeof error) != 0) code = bad_input(error);
    }
  }
  if (status != VICREG_OK) {
    fprintf(stderr, "vicreg-native: %s\n", vic ? vicreg_message(vic) : "out of host memory");
    code = exit_code(status);
  } else if (code == 0) {
    vicreg_plan plan = vicreg_last_plan(vic);
    if (json) {
      printf("{\"n\":%u,\"d\":%u,\"loss\":%.9g,\"invariance\":%.9g,\"variance\":%.9g,\"covariance\":%.9g,\"preset\":\"%s\",\"form\":\"%s\",\"variant\":\"%s\","
             "\"fellBack\":%s,\"forwardMs\":%.3f,\"adapter\":\"",
             n, d, terms.loss, terms.invariance, terms.variance, terms.covariance, options.preset, plan.form, plan.variant, plan.fell_back ? "true" : "false",
             forward_ms);
      print_json_text(vicreg_adapter_name(vic));
      printf("\"");
      if (grad_dir) printf(",\"backwardMs\":%.3f,\"gradA\":\"%s\",\"gradB\":\"%s\"", backward_ms, grad_paths[0], grad_paths[1]);
      if (grad_dir && repeat > 0) printf(",\"repeatMs\":%.3f", repeat_ms);
      printf("}\n");
      fflush(stdout);
    } else {
      printf("VICReg loss of %s and %s: n = %u, d = %u\n", paths[0], paths[1], n, d);
      printf("  loss %.9g = invariance %.9g, variance %.9g, covariance %.9g\n", terms.loss, terms.invariance, terms.variance, terms.covariance);
      printf("  %s form, %s kernels%s, on %s\n", plan.form, plan.variant, plan.fell_back ? " (fell back from dual)" : "", vicreg_adapter_name(vic));
      if (grad_dir) printf("  gradients in %s and %s\n", grad_paths[0], grad_paths[1]);
    }
  }
  for (int i = 0; i < 4; i++) release(buffers[i]);
  free(grads);
  free_matrix(&a);
  free_matrix(&b);
  vicreg_destroy(vic);
  return code;
}
