/* vicreg: the VICReg loss (Bardes, Ponce, LeCun, ICLR 2022) and its gradients on a WebGPU device, from
 * C, through the standard WebGPU C API (webgpu.h; built and tested against Dawn).
 *
 * The library runs the project's WGSL kernels as kernels/manifest.json describes them: it reads the
 * manifest and the .wgsl files from a directory at run time and re-types nothing; every size, dispatch
 * count and uniform value comes from the manifest's formulas. Definitions of the loss: docs/math.md.
 *
 *   vicreg_options options;
 *   vicreg_options_init(&options);
 *   options.kernels_dir = "path/to/kernels";
 *   vicreg_context *vic;
 *   if (vicreg_create(&options, NULL, NULL, &vic) != VICREG_OK) { puts(vicreg_message(vic)); ... }
 *   vicreg_terms terms;
 *   vicreg_forward(vic, a, b, n, d, &terms);           // a, b: WGPUBuffers, n x d float32, row-major
 *   vicreg_backward(vic, grad_a, grad_b, 1.0f, 0);     // dLoss/dA, dLoss/dB into your buffers
 *   vicreg_destroy(vic);
 *
 * Every function returns a status; on failure vicreg_message() holds one line that names the problem.
 * The library never exits, aborts or prints, and releases every WebGPU object it creates. A context is
 * not thread-safe: call it from one thread at a time. */
#ifndef VICREG_H
#define VICREG_H

#include <stdint.h>
#include <webgpu/webgpu.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vicreg_status {
  VICREG_OK = 0,
  VICREG_ERROR_SHAPE,      /* n < 2, d < 1, or a buffer smaller than n x d float32 */
  VICREG_ERROR_NON_FINITE, /* a NaN or an Inf in an input: vicreg_non_finite() locates it */
  VICREG_ERROR_OVERFLOW,   /* a float32 sum overflowed: the inputs' spread is too large */
  VICREG_ERROR_LIMIT,      /* the problem does not fit the device's limits */
  VICREG_ERROR_OPTION,     /* a bad coefficient, preset, form or variant */
  VICREG_ERROR_STATE,      /* backward without a forward to pair with */
  VICREG_ERROR_BUFFER,     /* a caller's buffer lacks a usage the call needs */
  VICREG_ERROR_DEVICE,     /* no adapter, a lost device, or an error WebGPU reported */
  VICREG_ERROR_KERNELS,    /* the manifest or a kernel file is missing or malformed */
  VICREG_ERROR_MEMORY      /* host memory ran out */
} vicreg_status;

typedef struct vicreg_options {
  double lambda, mu, nu, gamma, eps; /* weights and the hinge's target; defaults 25, 25, 1, 1, 1e-4 */
  const char *preset;                /* "paper" (default): variance = v(A) + v(B); "official": half that */
  const char *form;                  /* "auto" (default), "primal" (d x d covariance) or "dual" (n x n Gram) */
  const char *variant;               /* "auto" (default), or a plan of the manifest: "tiled", "subgroup",
                                        "workgroup", "shuffle" */
  const char *kernels_dir;           /* the directory holding manifest.json and the kernels (required) */
  uint64_t max_binding_size;         /* bytes; 0: the device's maxStorageBufferBindingSize */
  const char *dtype;                 /* the views' type: "float32" (default) or "float16" (n*d binary16 values,
                                        two per 4 bytes: buffers of at least ceil(n*d/2)*4 bytes) */
  const char *grad_dtype;            /* the gradients' type: "float32" or "float16"; NULL: the views' */
} vicreg_options;

/* Fills `options` with the defaults (kernels_dir NULL). */
void vicreg_options_init(vicreg_options *options);

typedef struct vicreg_terms {
  float loss, invariance, variance, covariance;
} vicreg_terms;

/* Where the last forward found a non-finite input: view 'A' or 'B', 0-based row and column, the value. */
typedef struct vicreg_non_finite {
  char view;
  uint32_t row, column;
  float value;
} vicreg_non_finite;

/* How the last successful forward ran. */
typedef struct vicreg_plan {
  const char *form;    /* "primal", "dual", or "primalBlocked" (the primal form past the binding limit) */
  const char *variant; /* the manifest plan */
  int fell_back;       /* 1 where the dual form's result was redone in the primal form for accuracy */
} vicreg_plan;

typedef struct vicreg_context vicreg_context;

/* Creates a context. With `device` NULL the library creates an instance, an adapter and a device of its
 * own (and releases them in vicreg_destroy); else it runs on the application's device, waiting on its
 * futures through `instance`, the instance the device came from (both stay the application's). On
 * failure *out still holds a context whose vicreg_message() says why (NULL only when memory ran out):
 * destroy it. */
vicreg_status vicreg_create(const vicreg_options *options, WGPUInstance instance, WGPUDevice device, vicreg_context **out);

/* The loss of two views, each an n x d float32 row-major buffer on the context's device with Storage
 * usage. The buffers must stay alive until the backward that pairs with this forward. */
vicreg_status vicreg_forward(vicreg_context *vic, WGPUBuffer a, WGPUBuffer b, uint32_t n, uint32_t d, vicreg_terms *terms);

/* dLoss/dA and dLoss/dB of the last forward, times `upstream`, into `grad_a` and `grad_b` (n x d in
 * grad_dtype, Storage usage): written, or added to what they hold where `accumulate` is nonzero (float16
 * gradients are added in float32, then rounded). */
vicreg_status vicreg_backward(vicreg_context *vic, WGPUBuffer grad_a, WGPUBuffer grad_b, float upstream, int accumulate);

/* With float16 gradients: whether the last backward rounded one to Inf or NaN (the upstream scale too
 * large: a loss scaler skips the step), read from the device. */
vicreg_status vicreg_gradient_overflow(vicreg_context *vic, int *overflow);

/* Copies `bytes` bytes of `buffer` (CopySrc usage) from `offset` into `out`, waiting for the device. */
vicreg_status vicreg_read(vicreg_context *vic, WGPUBuffer buffer, uint64_t offset, uint64_t bytes, void *out);

/* One line about the last failure ("" after a success). */
const char *vicreg_message(const vicreg_context *vic);
/* After VICREG_ERROR_NON_FINITE: where. */
vicreg_non_finite vicreg_last_non_finite(const vicreg_context *vic);
/* After a successful forward: how it ran. */
vicreg_plan vicreg_last_plan(const vicreg_context *vic);
/* The device the context runs on (to create the buffers it reads), its instance, and the adapter in words. */
WGPUDevice vicreg_device(const vicreg_context *vic);
WGPUInstance vicreg_instance(const vicreg_context *vic);
const char *vicreg_adapter_name(const vicreg_context *vic);

/* Releases everything the context created; NULL is allowed. */
void vicreg_destroy(vicreg_context *vic);

#ifdef __cplusplus
}
#endif

#endif
