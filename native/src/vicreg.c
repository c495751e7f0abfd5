/* The VICReg loss from kernels/manifest.json (vicreg.h): the host steps of docs/native.md in C. The
 * manifest decides every size, uniform value, pipeline constant and dispatch; this file only binds the
 * inputs, follows the plan of the chosen variant and form, and applies the host rules (non-finite
 * input, the dual form's accuracy fallback, the blocked primal form past the binding limit). */
#define _POSIX_C_SOURCE 200809L
#include "vicreg.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "formula.h"

#define MAX_BUFFERS 64
#define NAME_LENGTH 32

/* The manifest's usage flags, as WebGPU defines them. */
static const struct { const char *name; WGPUBufferUsage flag; } USAGES[] = {
  {"MAP_READ", WGPUBufferUsage_MapRead}, {"COPY_SRC", WGPUBufferUsage_CopySrc}, {"COPY_DST", WGPUBufferUsage_CopyDst},
  {"UNIFORM", WGPUBufferUsage_Uniform}, {"STORAGE", WGPUBufferUsage_Storage}, {"INDIRECT", WGPUBufferUsage_Indirect},
};

/* The order in which 'auto' takes the manifest's plans: the engine's own order (docs/design.md). */
static const char *const AUTO_VARIANTS[] = {"shuffle", "subgroup", "tiled", "workgroup"};

/* The buffers a caller passes: the views and the gradients, float32 or float16 ones (manifest loss.float16). */
static const char *const CALLER_BUFFERS[] = {"A", "B", "gradA", "gradB", "A16", "B16", "gradA16", "gradB16"};

typedef struct named_buffer {
  char name[NAME_LENGTH];
  WGPUBuffer buffer;
  int owned;
} named_buffer;

/* A form's buffers by plan name. */
typedef struct buffer_set {
  size_t count;
  named_buffer items[MAX_BUFFERS];
} buffer_set;

typedef struct pipeline_entry {
  char *key;
  WGPUComputePipeline pipeline;
  WGPUBindGroupLayout layout;
} pipeline_entry;

struct vicreg_context {
  vicreg_options options;
  char preset[16], form[16], variant[16];
  char *kernels_dir;
  char message[512];
  WGPUInstance instance;
  WGPUAdapter adapter;
  WGPUDevice device;
  WGPUQueue queue;
  int owns_device;
  int device_lost;
  char adapter_name[256];
  double lanes, max_lanes;
  int has_subgroups;
  uint64_t max_binding;
  cJSON *manifest;
  pipeline_entry *pipelines;
  size_t pipeline_count, pipeline_capacity;
  /* The last successful forward, for its backward. */
  int saved;
  uint32_t n, d;
  const cJSON *plan;      /* loss.plans[variant] */
  char saved_form[16];
  formula_env env;        /* inputs and the form's variables */
  buffer_set buffers;     /* the form's buffers; A and B are the caller's, referenced */
  vicreg_non_finite non_finite;
  char plan_form[16], plan_variant[16];
  int fell_back;
  int half_views, half_grads;   /* float16 views, gradients (loss.float16's passes around the plan's) */
  const cJSON *float16;         /* loss.float16 */
};

/* ---- Messages --------------------------------------------------------------------------------- */

static vicreg_status fail(vicreg_context *vic, vicreg_status status, const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(vic->message, sizeof vic->message, format, args);
  va_end(args);
  return status;
}

static void copy_view(char *out, size_t size, WGPUStringView view) {
  size_t length = view.data == NULL ? 0 : view.length == WGPU_STRLEN ? strlen(view.data) : view.length;
  if (length >= size) length = size - 1;
  if (length > 0) memcpy(out, view.data, length);
  out[length] = '\0';
  /* One line: WebGPU messages may span several. */
  for (char *c = out; *c; c++) if (*c == '\n' || *c == '\r') *c = ' ';
}

static WGPUStringView view_of(const char *text) {
  WGPUStringView view = {text, text ? strlen(text) : 0};
  return view;
}

/* As JavaScript prints a float: NaN, Infinity, -Infinity. */
static const char *float_text(float value, char *out, size_t size) {
  if (isnan(value)) snprintf(out, size, "NaN");
  else if (isinf(value)) snprintf(out, size, value > 0 ? "Infinity" : "-Infinity");
  else snprintf(out, size, "%.9g", value);
  return out;
}

/* ---- Waiting on futures ----------------------------------------------------------------------- */

/* Callbacks run inside wgpuInstanceProcessEvents; this polls it until `*done`, sleeping briefly between
 * polls so as not to take a CPU core from the device (a CPU adapter needs them). */
static void wait_for(vicreg_context *vic, const volatile int *done) {
  struct timespec pause = {0, 50000};
  while (!*done) {
    wgpuInstanceProcessEvents(vic->instance);
    if (!*done) nanosleep(&pause, NULL);
  }
}

typedef struct map_wait { volatile int done; WGPUMapAsyncStatus status; char message[256]; } map_wait;

static void on_mapped(WGPUMapAsyncStatus status, WGPUStringView message, void *userdata1, void *userdata2) {
  (void)userdata2;
  map_wait *wait = userdata1;
  wait->status = status;
  copy_view(wait->message, sizeof wait->message, message);
  wait->done = 1;
}

typedef struct scope_wait { volatile int done; WGPUErrorType type; char message[384]; } scope_wait;

static void on_scope_popped(WGPUPopErrorScopeStatus status, WGPUErrorType type, WGPUStringView message, void *userdata1, void *userdata2) {
  (void)userdata2;
  scope_wait *wait = userdata1;
  wait->type = status == WGPUPopErrorScopeStatus_Success ? type : WGPUErrorType_Unknown;
  copy_view(wait->message, sizeof wait->message, message);
  wait->done = 1;
}

static void push_scopes(vicreg_context *vic) {
  wgpuDevicePushErrorScope(vic->device, WGPUErrorFilter_OutOfMemory);
  wgpuDevicePushErrorScope(vic->device, WGPUErrorFilter_Validation);
}

/* Pops the two scopes push_scopes pushed; a validation or out-of-memory error becomes a DEVICE status. */
static vicreg_status pop_scopes(vicreg_context *vic, const char *what) {
  scope_wait waits[2] = {{0}, {0}};
  for (int i = 0; i < 2; i++) {
    WGPUPopErrorScopeCallbackInfo info = WGPU_POP_ERROR_SCOPE_CALLBACK_INFO_INIT;
    info.mode = WGPUCallbackMode_AllowProcessEvents;
    info.callback = on_scope_popped;
    info.userdata1 = &waits[i];
    wgpuDevicePopErrorScope(vic->device, info);
  }
  for (int i = 0; i < 2; i++) wait_for(vic, &waits[i].done);
  for (int i = 0; i < 2; i++) {
    if (waits[i].type != WGPUErrorType_NoError) {
      const char *kind = waits[i].type == WGPUErrorType_OutOfMemory ? "out of memory" : "a WebGPU error";
      return fail(vic, VICREG_ERROR_DEVICE, "%s: %s: %s", what, kind, waits[i].message[0] ? waits[i].message : "(no message)");
    }
  }
  if (vic->device_lost) return fail(vic, VICREG_ERROR_DEVICE, "%s: the device was lost", what);
  return VICREG_OK;
}

/* ---- The device -------------------------------------------------------------------------------- */

typedef struct adapter_wait { volatile int done; WGPUAdapter adapter; char message[256]; } adapter_wait;
typedef struct device_wait { volatile int done; WGPUDevice device; char message[256]; } device_wait;

static void on_adapter(WGPURequestAdapterStatus status, WGPUAdapter adapter, WGPUStringView message, void *userdata1, void *userdata2) {
  (void)userdata2;
  adapter_wait *wait = userdata1;
  wait->adapter = status == WGPURequestAdapterStatus_Success ? adapter : NULL;
  copy_view(wait->message, sizeof wait->message, message);
  wait->done = 1;
}

static void on_device(WGPURequestDeviceStatus status, WGPUDevice device, WGPUStringView message, void *userdata1, void *userdata2) {
  (void)userdata2;
  device_wait *wait = userdata1;
  wait->device = status == WGPURequestDeviceStatus_Success ? device : NULL;
  copy_view(wait->message, sizeof wait->message, message);
  wait->done = 1;
}

static void on_device_lost(WGPUDevice const *device, WGPUDeviceLostReason reason, WGPUStringView message, void *userdata1, void *userdata2) {
  (void)device; (void)message; (void)userdata2;
  vicreg_context *vic = userdata1;
  if (reason != WGPUDeviceLostReason_Destroyed && reason != WGPUDeviceLostReason_CallbackCancelled) vic->device_lost = 1;
}

/* Errors outside a scope (none are expected: every call runs in one) are dropped rather than printed. */
static void on_uncaptured_error(WGPUDevice const *device, WGPUErrorType type, WGPUStringView message, void *userdata1, void *userdata2) {
  (void)device; (void)type; (void)message; (void)userdata1; (void)userdata2;
}

/* An instance, the high-performance adapter and a device with its largest buffer limits and, where
 * the adapter has them, subgroups. */
static vicreg_status create_device(vicreg_context *vic) {
  vic->instance = wgpuCreateInstance(NULL);
  if (!vic->instance) return fail(vic, VICREG_ERROR_DEVICE, "no WebGPU instance (Dawn failed to start)");
  adapter_wait adapter = {0};
  WGPURequestAdapterOptions adapter_options = WGPU_REQUEST_ADAPTER_OPTIONS_INIT;
  adapter_options.powerPreference = WGPUPowerPreference_HighPerformance;
  WGPURequestAdapterCallbackInfo adapter_info = WGPU_REQUEST_ADAPTER_CALLBACK_INFO_INIT;
  adapter_info.mode = WGPUCallbackMode_AllowProcessEvents;
  adapter_info.callback = on_adapter;
  adapter_info.userdata1 = &adapter;
  wgpuInstanceRequestAdapter(vic->instance, &adapter_options, adapter_info);
  wait_for(vic, &adapter.done);
  if (!adapter.adapter) {
    return fail(vic, VICREG_ERROR_DEVICE, "no WebGPU adapter found%s%s (on a machine without a GPU, a CPU Vulkan driver such as Mesa's lavapipe provides one)",
                adapter.message[0] ? ": " : "", adapter.message);
  }
  vic->adapter = adapter.adapter;

  WGPULimits supported = WGPU_LIMITS_INIT;
  if (wgpuAdapterGetLimits(vic->adapter, &supported) != WGPUStatus_Success) return fail(vic, VICREG_ERROR_DEVICE, "the adapter reports no limits");
  WGPULimits required = WGPU_LIMITS_INIT;
  required.maxStorageBufferBindingSize = supported.maxStorageBufferBindingSize;
  required.maxBufferSize = supported.maxBufferSize;
  required.maxStorageBuffersPerShaderStage = supported.maxStorageBuffersPerShaderStage;
  required.maxComputeWorkgroupsPerDimension = supported.maxComputeWorkgroupsPerDimension;
  WGPUFeatureName subgroups = WGPUFeatureName_Subgroups;
  device_wait device = {0};
  WGPUDeviceDescriptor descriptor = WGPU_DEVICE_DESCRIPTOR_INIT;
  descriptor.label = view_of("vicreg");
  descriptor.requiredLimits = &required;
  if (wgpuAdapterHasFeature(vic->adapter, subgroups)) {
    descriptor.requiredFeatureCount = 1;
    descriptor.requiredFeatures = &subgroups;
  }
  descriptor.deviceLostCallbackInfo.mode = WGPUCallbackMode_AllowProcessEvents;
  descriptor.deviceLostCallbackInfo.callback = on_device_lost;
  descriptor.deviceLostCallbackInfo.userdata1 = vic;
  descriptor.uncapturedErrorCallbackInfo.callback = on_uncaptured_error;
  WGPURequestDeviceCallbackInfo device_info = WGPU_REQUEST_DEVICE_CALLBACK_INFO_INIT;
  device_info.mode = WGPUCallbackMode_AllowProcessEvents;
  device_info.callback = on_device;
  device_info.userdata1 = &device;
  wgpuAdapterRequestDevice(vic->adapter, &descriptor, device_info);
  wait_for(vic, &device.done);
  if (!device.device) return fail(vic, VICREG_ERROR_DEVICE, "the adapter refused a device: %s", device.message);
  vic->device = device.device;
  return VICREG_OK;
}

/* What the kernels need to know of the device: subgroup sizes, the binding limit, the adapter's name. */
static vicreg_status read_device(vicreg_context *vic) {
  WGPUAdapterInfo info = WGPU_ADAPTER_INFO_INIT;
  if (wgpuDeviceGetAdapterInfo(vic->device, &info) == WGPUStatus_Success) {
    char description[200], vendor[100];
    copy_view(description, sizeof description, info.description);
    copy_view(vendor, sizeof vendor, info.vendor);
    snprintf(vic->adapter_name, sizeof vic->adapter_name, "%s", description[0] ? description : vendor[0] ? vendor : "unknown adapter");
    vic->has_subgroups = wgpuDeviceHasFeature(vic->device, WGPUFeatureName_Subgroups);
    vic->lanes = vic->has_subgroups ? info.subgroupMinSize : 0;
    vic->max_lanes = vic->has_subgroups ? info.subgroupMaxSize : 0;
    wgpuAdapterInfoFreeMembers(info);
  } else {
    snprintf(vic->adapter_name, sizeof vic->adapter_name, "unknown adapter");
  }
  WGPULimits limits = WGPU_LIMITS_INIT;
  if (wgpuDeviceGetLimits(vic->device, &limits) != WGPUStatus_Success) return fail(vic, VICREG_ERROR_DEVICE, "the device reports no limits");
  uint64_t limit = limits.maxStorageBufferBindingSize < limits.maxBufferSize ? limits.maxStorageBufferBindingSize : limits.maxBufferSize;
  vic->max_binding = vic->options.max_binding_size && vic->options.max_binding_size < limit ? vic->options.max_binding_size : limit;
  vic->queue = wgpuDeviceGetQueue(vic->device);
  return VICREG_OK;
}

/* ---- Files and the manifest ------------------------------------------------------------------- */

static char *read_text(const char *dir, const char *file) {
  size_t length = strlen(dir) + strlen(file) + 2;
  char *path = malloc(length);
  if (!path) return NULL;
  snprintf(path, length, "%s/%s", dir, file);
  FILE *f = fopen(path, "rb");
  free(path);
  if (!f) return NULL;
  char *text = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long size = ftell(f);
    if (size >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)size + 1))) {
      if (fread(text, 1, (size_t)size, f) != (size_t)size) {
        free(text);
        text = NULL;
      } else {
        text[size] = '\0';
      }
    }
  }
  fclose(f);
  return text;
}

static const cJSON *item(const cJSON *object, const char *key) { return cJSON_GetObjectItemCaseSensitive(object, key); }
static const char *text_of(const cJSON *object, const char *key) {
  const cJSON *value = item(object, key);
  return cJSON_IsString(value) ? value->valuestring : NULL;
}

/* Evaluates a formula; a malformed one (a manifest this library does not understand) is reported. */
static vicreg_status evaluate(vicreg_context *vic, const char *formula, const formula_env *env, double *out) {
  const char *error = NULL;
  if (!formula) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: a formula is missing");
  *out = formula_eval(formula, env, &error);
  if (error) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: formula \"%s\": %s", formula, error);
  return VICREG_OK;
}

/* Binds a plan's or a form's variables, in order: each may use those before it. */
static vicreg_status bind_variables(vicreg_context *vic, const cJSON *variables, formula_env *env) {
  const cJSON *variable;
  cJSON_ArrayForEach(variable, variables) {
    double value;
    vicreg_status status = evaluate(vic, text_of(variable, "value"), env, &value);
    if (status != VICREG_OK) return status;
    if (formula_bind(env, text_of(variable, "name"), value) != 0) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: too many variables");
  }
  return VICREG_OK;
}

/* ---- Buffers ---------------------------------------------------------------------------------- */

static WGPUBuffer buffer_named(const buffer_set *set, const char *name) {
  for (size_t i = 0; i < set->count; i++) if (strcmp(set->items[i].name, name) == 0) return set->items[i].buffer;
  return NULL;
}

static int add_buffer(buffer_set *set, const char *name, WGPUBuffer buffer, int owned) {
  if (set->count == MAX_BUFFERS || strlen(name) >= NAME_LENGTH) return -1;
  named_buffer *entry = &set->items[set->count++];
  snprintf(entry->name, sizeof entry->name, "%s", name);
  entry->buffer = buffer;
  entry->owned = owned;
  return 0;
}

/* Destroys the buffers the set owns and drops its references to the others. */
static void release_buffers(buffer_set *set) {
  for (size_t i = 0; i < set->count; i++) {
    if (set->items[i].owned) wgpuBufferDestroy(set->items[i].buffer);
    wgpuBufferRelease(set->items[i].buffer);
  }
  set->count = 0;
}

/* The bytes of a caller's n x d buffer: float32, or float16 in whole u32 words. */
static uint64_t element_bytes(int half, uint32_t n, uint32_t d) {
  uint64_t count = (uint64_t)n * d;
  return half ? 4 * ((count + 1) / 2) : 4 * count;
}

static int is_caller_buffer(const char *name) {
  for (size_t i = 0; i < sizeof CALLER_BUFFERS / sizeof *CALLER_BUFFERS; i++) if (strcmp(name, CALLER_BUFFERS[i]) == 0) return 1;
  return 0;
}

static WGPUBufferUsage usage_of(const cJSON *flags) {
  WGPUBufferUsage usage = WGPUBufferUsage_None;
  const cJSON *flag;
  cJSON_ArrayForEach(flag, flags) {
    for (size_t i = 0; i < sizeof USAGES / sizeof *USAGES; i++) {
      if (cJSON_IsString(flag) && strcmp(flag->valuestring, USAGES[i].name) == 0) usage |= USAGES[i].flag;
    }
  }
  return usage;
}

static WGPUBuffer create_buffer(vicreg_context *vic, const char *label, uint64_t bytes, WGPUBufferUsage usage) {
  WGPUBufferDescriptor descriptor = WGPU_BUFFER_DESCRIPTOR_INIT;
  descriptor.label = view_of(label);
  descriptor.size = (bytes + 3) / 4 * 4;
  descriptor.usage = usage;
  return wgpuDeviceCreateBuffer(vic->device, &descriptor);
}

/* A uniform's bytes: each field's formula evaluated and stored as its WGSL type, little-endian. */
static vicreg_status write_uniform(vicreg_context *vic, WGPUBuffer buffer, const cJSON *layout, const formula_env *env) {
  size_t bytes = (size_t)cJSON_GetNumberValue(item(layout, "bytes"));
  unsigned char *data = calloc(bytes ? bytes : 4, 1);
  if (!data) return fail(vic, VICREG_ERROR_MEMORY, "out of host memory");
  const cJSON *field;
  vicreg_status status = VICREG_OK;
  cJSON_ArrayForEach(field, item(layout, "fields")) {
    double value;
    if ((status = evaluate(vic, text_of(field, "value"), env, &value)) != VICREG_OK) break;
    size_t offset = (size_t)cJSON_GetNumberValue(item(field, "offset"));
    const char *type = text_of(field, "type");
    if (offset + 4 > bytes || !type) {
      status = fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: a uniform field outside its struct");
      break;
    }
    if (strcmp(type, "f32") == 0) {
      float f = (float)value;
      memcpy(data + offset, &f, 4);
    } else if (strcmp(type, "i32") == 0) {
      int32_t i = (int32_t)value;
      memcpy(data + offset, &i, 4);
    } else {
      uint32_t u = (uint32_t)value;
      memcpy(data + offset, &u, 4);
    }
  }
  if (status == VICREG_OK) wgpuQueueWriteBuffer(vic->queue, buffer, 0, data, bytes);
  free(data);
  return status;
}

/* ---- Pipelines -------------------------------------------------------------------------------- */

/* The pipeline of a pass, with its constants evaluated (ACCUMULATE set by the caller's choice where
 * the kernel has it), compiled once per kernel and constants. */
static vicreg_status pipeline_for(vicreg_context *vic, const cJSON *pass, int accumulate, pipeline_entry **out) {
  const char *kernel_id = text_of(pass, "kernel");
  const cJSON *kernel = item(item(vic->manifest, "kernels"), kernel_id ? kernel_id : "");
  if (!kernel) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: a pass names an unknown kernel");
  formula_env lanes = {0};
  formula_bind(&lanes, "lanes", vic->lanes);
  WGPUConstantEntry constants[16];
  char key[512];
  int used = snprintf(key, sizeof key, "%s", kernel_id);
  size_t count = 0;
  const cJSON *constant;
  cJSON_ArrayForEach(constant, item(pass, "constants")) {
    if (count == 16) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: too many constants");
    double value;
    vicreg_status status = evaluate(vic, cJSON_GetStringValue(constant), &lanes, &value);
    if (status != VICREG_OK) return status;
    if (strcmp(constant->string, "ACCUMULATE") == 0) value = accumulate ? 1 : 0;
    WGPUConstantEntry entry = WGPU_CONSTANT_ENTRY_INIT;
    entry.key = view_of(constant->string);
    entry.value = value;
    constants[count++] = entry;
    used += snprintf(key + used, used < (int)sizeof key ? sizeof key - (size_t)used : 0, "|%s=%.17g", constant->string, value);
  }
  for (size_t i = 0; i < vic->pipeline_count; i++) {
    if (strcmp(vic->pipelines[i].key, key) == 0) {
      *out = &vic->pipelines[i];
      return VICREG_OK;
    }
  }
  const char *file = text_of(kernel, "file");
  char *code = file ? read_text(vic->kernels_dir, file) : NULL;
  if (!code) return fail(vic, VICREG_ERROR_KERNELS, "cannot read %s/%s", vic->kernels_dir, file ? file : "(a kernel without a file)");
  if (vic->pipeline_count == vic->pipeline_capacity) {
    size_t capacity = vic->pipeline_capacity ? 2 * vic->pipeline_capacity : 16;
    pipeline_entry *grown = realloc(vic->pipelines, capacity * sizeof *grown);
    if (!grown) {
      free(code);
      return fail(vic, VICREG_ERROR_MEMORY, "out of host memory");
    }
    vic->pipelines = grown;
    vic->pipeline_capacity = capacity;
  }
  WGPUShaderSourceWGSL source = WGPU_SHADER_SOURCE_WGSL_INIT;
  source.code = view_of(code);
  WGPUShaderModuleDescriptor module_descriptor = WGPU_SHADER_MODULE_DESCRIPTOR_INIT;
  module_descriptor.nextInChain = &source.chain;
  module_descriptor.label = view_of(kernel_id);
  push_scopes(vic);
  WGPUShaderModule module = wgpuDeviceCreateShaderModule(vic->device, &module_descriptor);
  free(code);
  WGPUComputePipelineDescriptor descriptor = WGPU_COMPUTE_PIPELINE_DESCRIPTOR_INIT;
  descriptor.label = view_of(kernel_id);
  descriptor.compute.module = module;
  descriptor.compute.entryPoint = view_of(text_of(kernel, "entryPoint"));
  descriptor.compute.constantCount = count;
  descriptor.compute.constants = constants;
  WGPUComputePipeline pipeline = wgpuDeviceCreateComputePipeline(vic->device, &descriptor);
  wgpuShaderModuleRelease(module);
  char what[128];
  snprintf(what, sizeof what, "kernel %s", kernel_id);
  vicreg_status status = pop_scopes(vic, what);
  if (status != VICREG_OK) {
    wgpuComputePipelineRelease(pipeline);
    return status;
  }
  char *stored_key = strdup(key);
  if (!stored_key) {
    wgpuComputePipelineRelease(pipeline);
    return fail(vic, VICREG_ERROR_MEMORY, "out of host memory");
  }
  pipeline_entry *entry = &vic->pipelines[vic->pipeline_count++];
  entry->key = stored_key;
  entry->pipeline = pipeline;
  entry->layout = wgpuComputePipelineGetBindGroupLayout(pipeline, 0);
  *out = entry;
  return VICREG_OK;
}

/* ---- Encoding a plan's passes ----------------------------------------------------------------- */

/* Records one pass: its pipeline, a bind group of the named buffers, the evaluated dispatch (none
 * where a count is 0: a pass that does not apply to this shape). */
static vicreg_status encode_pass(vicreg_context *vic, WGPUCommandEncoder encoder, const cJSON *pass, const buffer_set *buffers,
                                 const formula_env *env, int accumulate) {
  double counts[3];
  const cJSON *dispatch = item(pass, "dispatch");
  for (int i = 0; i < 3; i++) {
    vicreg_status status = evaluate(vic, cJSON_GetStringValue(cJSON_GetArrayItem(dispatch, i)), env, &counts[i]);
    if (status != VICREG_OK) return status;
  }
  if (counts[0] * counts[1] * counts[2] == 0) return VICREG_OK;
  pipeline_entry *pipeline = NULL;
  vicreg_status status = pipeline_for(vic, pass, accumulate, &pipeline);
  if (status != VICREG_OK) return status;
  WGPUBindGroupEntry entries[16];
  size_t count = 0;
  const cJSON *binding;
  cJSON_ArrayForEach(binding, item(pass, "bindings")) {
    const char *name = text_of(binding, "buffer");
    WGPUBuffer buffer = name ? buffer_named(buffers, name) : NULL;
    if (!buffer || count == 16) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: pass %s binds a buffer its plan lacks (%s)", text_of(pass, "label"), name ? name : "?");
    WGPUBindGroupEntry entry = WGPU_BIND_GROUP_ENTRY_INIT;
    entry.binding = (uint32_t)cJSON_GetNumberValue(item(binding, "binding"));
    entry.buffer = buffer;
    entry.size = wgpuBufferGetSize(buffer);
    entries[count++] = entry;
  }
  WGPUBindGroupDescriptor descriptor = WGPU_BIND_GROUP_DESCRIPTOR_INIT;
  descriptor.layout = pipeline->layout;
  descriptor.entryCount = count;
  descriptor.entries = entries;
  WGPUBindGroup group = wgpuDeviceCreateBindGroup(vic->device, &descriptor);
  WGPUComputePassDescriptor pass_descriptor = WGPU_COMPUTE_PASS_DESCRIPTOR_INIT;
  pass_descriptor.label = view_of(text_of(pass, "label"));
  WGPUComputePassEncoder compute = wgpuCommandEncoderBeginComputePass(encoder, &pass_descriptor);
  wgpuComputePassEncoderSetPipeline(compute, pipeline->pipeline);
  wgpuComputePassEncoderSetBindGroup(compute, 0, group, 0, NULL);
  wgpuComputePassEncoderDispatchWorkgroups(compute, (uint32_t)counts[0], (uint32_t)counts[1], (uint32_t)counts[2]);
  wgpuComputePassEncoderEnd(compute);
  wgpuComputePassEncoderRelease(compute);
  wgpuBindGroupRelease(group);
  return VICREG_OK;
}

/* Records a list of passes; a { forEachGroup, passes } entry runs its passes once per group g, each
 * with group g's instance of every 'group'-scope uniform (made here, kept in `temporaries` until the
 * work is submitted). */
static vicreg_status encode_steps(vicreg_context *vic, WGPUCommandEncoder encoder, const cJSON *steps, const cJSON *form_plan,
                                  const buffer_set *buffers, const formula_env *env, int accumulate, buffer_set *temporaries) {
  const cJSON *step;
  cJSON_ArrayForEach(step, steps) {
    const cJSON *passes = item(step, "passes");
    if (!passes) {
      vicreg_status status = encode_pass(vic, encoder, step, buffers, env, accumulate);
      if (status != VICREG_OK) return status;
      continue;
    }
    double groups;
    vicreg_status status = evaluate(vic, text_of(step, "forEachGroup"), env, &groups);
    if (status != VICREG_OK) return status;
    for (uint32_t g = 0; g < (uint32_t)groups; g++) {
      formula_env group_env = *env;
      formula_bind(&group_env, "g", g);
      buffer_set group_buffers = *buffers;
      const cJSON *pass;
      cJSON_ArrayForEach(pass, passes) {
        const cJSON *binding;
        cJSON_ArrayForEach(binding, item(pass, "bindings")) {
          const char *name = text_of(binding, "buffer");
          const cJSON *spec = item(item(item(vic->manifest, "loss"), "buffers"), name ? name : "");
          const char *scope = text_of(spec, "scope");
          if (!scope || strcmp(scope, "group") != 0 || buffer_named(&group_buffers, name)) continue;
          double bytes;
          if ((status = evaluate(vic, text_of(spec, "bytes"), &group_env, &bytes)) != VICREG_OK) return status;
          WGPUBuffer buffer = create_buffer(vic, name, (uint64_t)bytes, usage_of(item(spec, "usage")));
          /* `temporaries` holds the reference; `group_buffers` only names it for the passes. */
          if (add_buffer(temporaries, name, buffer, 1) != 0) {
            wgpuBufferDestroy(buffer);
            wgpuBufferRelease(buffer);
            return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: too many buffers");
          }
          if (add_buffer(&group_buffers, name, buffer, 0) != 0) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: too many buffers");
          const cJSON *layout = item(item(form_plan, "uniforms"), name);
          if (layout && (status = write_uniform(vic, buffer, layout, &group_env)) != VICREG_OK) return status;
        }
      }
      if ((status = encode_steps(vic, encoder, passes, form_plan, &group_buffers, &group_env, accumulate, temporaries)) != VICREG_OK) return status;
    }
  }
  return VICREG_OK;
}

/* Finishes and submits an encoder; the error scopes around the call report what WebGPU rejected. */
static void submit(vicreg_context *vic, WGPUCommandEncoder encoder) {
  WGPUCommandBuffer commands = wgpuCommandEncoderFinish(encoder, NULL);
  wgpuQueueSubmit(vic->queue, 1, &commands);
  wgpuCommandBufferRelease(commands);
}

/* ---- Reading back ----------------------------------------------------------------------------- */

vicreg_status vicreg_read(vicreg_context *vic, WGPUBuffer buffer, uint64_t offset, uint64_t bytes, void *out) {
  if (!vic) return VICREG_ERROR_STATE;
  if (vic->device_lost) return fail(vic, VICREG_ERROR_DEVICE, "the device was lost");
  uint64_t size = (bytes + 3) / 4 * 4;
  if (!(wgpuBufferGetUsage(buffer) & WGPUBufferUsage_CopySrc)) return fail(vic, VICREG_ERROR_BUFFER, "a buffer to read lacks CopySrc usage");
  if (offset + size > wgpuBufferGetSize(buffer)) return fail(vic, VICREG_ERROR_BUFFER, "reading %llu bytes at %llu passes the end of a buffer of %llu",
                                                          (unsigned long long)bytes, (unsigned long long)offset, (unsigned long long)wgpuBufferGetSize(buffer));
  push_scopes(vic);
  WGPUBuffer staging = create_buffer(vic, "vicreg staging", size, WGPUBufferUsage_MapRead | WGPUBufferUsage_CopyDst);
  WGPUCommandEncoder encoder = wgpuDeviceCreateCommandEncoder(vic->device, NULL);
  wgpuCommandEncoderCopyBufferToBuffer(encoder, buffer, offset, staging, 0, size);
  submit(vic, encoder);
  wgpuCommandEncoderRelease(encoder);
  map_wait wait = {0};
  WGPUBufferMapCallbackInfo info = WGPU_BUFFER_MAP_CALLBACK_INFO_INIT;
  info.mode = WGPUCallbackMode_AllowProcessEvents;
  info.callback = on_mapped;
  info.userdata1 = &wait;
  wgpuBufferMapAsync(staging, WGPUMapMode_Read, 0, size, info);
  wait_for(vic, &wait.done);
  vicreg_status status = pop_scopes(vic, "reading a buffer");
  if (status == VICREG_OK && wait.status != WGPUMapAsyncStatus_Success) status = fail(vic, VICREG_ERROR_DEVICE, "mapping a buffer failed: %s", wait.message);
  if (status == VICREG_OK) {
    const void *mapped = wgpuBufferGetConstMappedRange(staging, 0, size);
    if (mapped) memcpy(out, mapped, bytes);
    else status = fail(vic, VICREG_ERROR_DEVICE, "a mapped buffer has no range");
    wgpuBufferUnmap(staging);
  }
  wgpuBufferDestroy(staging);
  wgpuBufferRelease(staging);
  return status;
}

/* ---- The host rules --------------------------------------------------------------------------- */

static const cJSON *host_rules(const vicreg_context *vic) { return item(item(vic->manifest, "loss"), "host"); }

/* Whether plan `name` can run here: its features, and its `when` for this shape and these lanes. */
static int plan_runs(vicreg_context *vic, const cJSON *plan, const formula_env *env) {
  const cJSON *requires = item(plan, "requires");
  const cJSON *feature;
  cJSON_ArrayForEach(feature, item(requires, "features")) {
    if (!cJSON_IsString(feature) || strcmp(feature->valuestring, "subgroups") != 0 || !vic->has_subgroups) return 0;
  }
  double when;
  return evaluate(vic, text_of(requires, "when"), env, &when) == VICREG_OK && when != 0;
}

/* The variant's plan: the forced one (an OPTION error where it cannot run), or the first that can. */
static vicreg_status choose_plan(vicreg_context *vic, const formula_env *env, const cJSON **plan, const char **name) {
  const cJSON *plans = item(item(vic->manifest, "loss"), "plans");
  if (strcmp(vic->variant, "auto") != 0) {
    const cJSON *forced = item(plans, vic->variant);
    if (!forced) return fail(vic, VICREG_ERROR_OPTION, "variant '%s' is not a plan of kernels/manifest.json", vic->variant);
    if (!plan_runs(vic, forced, env)) {
      const char *subgroups = text_of(item(forced, "requires"), "subgroups");
      return fail(vic, VICREG_ERROR_OPTION, "variant '%s' cannot run here: it needs %s and %s (this device: subgroups %s, sizes %g..%g)",
                  vic->variant, subgroups ? subgroups : "no optional feature", text_of(item(forced, "requires"), "when"),
                  vic->has_subgroups ? "yes" : "no", vic->lanes, vic->max_lanes);
    }
    *plan = forced;
    *name = vic->variant;
    return VICREG_OK;
  }
  for (size_t i = 0; i < sizeof AUTO_VARIANTS / sizeof *AUTO_VARIANTS; i++) {
    const cJSON *candidate = item(plans, AUTO_VARIANTS[i]);
    if (candidate && plan_runs(vic, candidate, env)) {
      *plan = candidate;
      *name = AUTO_VARIANTS[i];
      return VICREG_OK;
    }
  }
  return fail(vic, VICREG_ERROR_OPTION, "no plan of kernels/manifest.json runs on this device");
}

/* The form's plan: "primal" turns into "primalBlocked" past the binding limit, where the plan has it. */
static vicreg_status form_plan_for(vicreg_context *vic, const cJSON *plan, const char *form, const formula_env *env, const char **chosen) {
  const cJSON *blocked = item(host_rules(vic), "blocked");
  if (blocked && strcmp(form, text_of(blocked, "from") ? text_of(blocked, "from") : "") == 0) {
    double when;
    vicreg_status status = evaluate(vic, text_of(blocked, "when"), env, &when);
    if (status != VICREG_OK) return status;
    if (when) {
      const char *to = text_of(blocked, "to");
      if (!to || !item(plan, to)) {
        return fail(vic, VICREG_ERROR_LIMIT, "the primal form's matrices need %.0f bytes, over the binding limit of %llu bytes, and this variant has no blocked form",
                    4 * ((double)vic->d * vic->d + vic->d), (unsigned long long)vic->max_binding);
      }
      form = to;
    }
  }
  if (!item(plan, form)) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: the plan has no form '%s'", form);
  *chosen = form;
  return VICREG_OK;
}

/* Allocates a form's buffers (the caller's A and B bound as they are), writes its uniforms. */
static vicreg_status prepare_form(vicreg_context *vic, const cJSON *form_plan, WGPUBuffer a, WGPUBuffer b, formula_env *env, buffer_set *set) {
  vicreg_status status = bind_variables(vic, item(form_plan, "variables"), env);
  if (status != VICREG_OK) return status;
  const cJSON *specs = item(item(vic->manifest, "loss"), "buffers");
  if (add_buffer(set, vic->half_views ? "A16" : "A", a, 0) != 0 || add_buffer(set, vic->half_views ? "B16" : "B", b, 0) != 0) {
    return fail(vic, VICREG_ERROR_KERNELS, "too many buffers");
  }
  wgpuBufferAddRef(a);
  wgpuBufferAddRef(b);
  /* The form's buffers, and with float16 the conversions' own (their float32 views and gradients among them). */
  const cJSON *lists[2] = {item(form_plan, "buffers"), vic->half_views || vic->half_grads ? item(vic->float16, "buffers") : NULL};
  for (int l = 0; l < 2; l++) {
  const cJSON *name;
  cJSON_ArrayForEach(name, lists[l]) {
    const char *buffer_name = cJSON_GetStringValue(name);
    const cJSON *spec = item(specs, buffer_name ? buffer_name : "");
    if (!spec) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: the plan names an unknown buffer");
    const char *scope = text_of(spec, "scope");
    int callers = is_caller_buffer(buffer_name) && !(vic->half_views && (strcmp(buffer_name, "A") == 0 || strcmp(buffer_name, "B") == 0))
                  && !(vic->half_grads && (strcmp(buffer_name, "gradA") == 0 || strcmp(buffer_name, "gradB") == 0));
    if (callers || (scope && strcmp(scope, "group") == 0) || buffer_named(set, buffer_name)) continue;
    double bytes;
    if ((status = evaluate(vic, text_of(spec, "bytes"), env, &bytes)) != VICREG_OK) return status;
    const char *kind = text_of(spec, "kind");
    if (kind && strcmp(kind, "storage") == 0 && bytes > (double)vic->max_binding) {
      return fail(vic, VICREG_ERROR_LIMIT, "buffer %s needs %.0f bytes, over the binding limit of %llu bytes", buffer_name, bytes, (unsigned long long)vic->max_binding);
    }
    WGPUBuffer buffer = create_buffer(vic, buffer_name, (uint64_t)bytes, usage_of(item(spec, "usage")));
    if (add_buffer(set, buffer_name, buffer, 1) != 0) {
      wgpuBufferDestroy(buffer);
      wgpuBufferRelease(buffer);
      return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: too many buffers");
    }
    const cJSON *layout = item(item(l == 0 ? form_plan : vic->float16, "uniforms"), buffer_name);
    if (layout && (status = write_uniform(vic, buffer, layout, env)) != VICREG_OK) return status;
  }
  }
  return VICREG_OK;
}

/* Runs a form's forward passes and reads the result's fields into `result` (bound by name in `fields`). */
static vicreg_status run_forward(vicreg_context *vic, const cJSON *form_plan, WGPUBuffer a, WGPUBuffer b, formula_env *env, buffer_set *set, float result[8]) {
  push_scopes(vic);
  vicreg_status status = prepare_form(vic, form_plan, a, b, env, set);
  buffer_set temporaries = {0};
  if (status == VICREG_OK) {
    WGPUCommandEncoder encoder = wgpuDeviceCreateCommandEncoder(vic->device, NULL);
    if (vic->half_views) status = encode_steps(vic, encoder, item(vic->float16, "forward"), vic->float16, set, env, 0, &temporaries);
    if (status == VICREG_OK) status = encode_steps(vic, encoder, item(form_plan, "forward"), form_plan, set, env, 0, &temporaries);
    if (status == VICREG_OK) submit(vic, encoder);
    wgpuCommandEncoderRelease(encoder);
  }
  vicreg_status scopes = pop_scopes(vic, "forward");
  release_buffers(&temporaries);
  if (status != VICREG_OK) return status;
  if (scopes != VICREG_OK) return scopes;
  const char *result_name = text_of(item(host_rules(vic), "result"), "buffer");
  WGPUBuffer buffer = buffer_named(set, result_name ? result_name : "result");
  if (!buffer) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: no result buffer");
  return vicreg_read(vic, buffer, 0, 8 * sizeof(float), result);
}

/* After a non-finite flag: the first bad element from the flags buffer ([rowA+1 | rowB+1 | bitsA | bitsB], d each). */
static vicreg_status locate_non_finite(vicreg_context *vic, const buffer_set *set, uint32_t d) {
  WGPUBuffer flags = buffer_named(set, "flags");
  uint32_t *words = flags ? malloc((size_t)4 * d * sizeof *words) : NULL;
  if (!words) return fail(vic, flags ? VICREG_ERROR_MEMORY : VICREG_ERROR_KERNELS, "cannot read the non-finite flags");
  vicreg_status status = vicreg_read(vic, flags, 0, (uint64_t)4 * d * sizeof *words, words);
  if (status == VICREG_OK) {
    vicreg_non_finite found = {'A', 0, 0, NAN};
    int located = 0;
    for (uint32_t v = 0; v < 2 && !located; v++) {
      int64_t best = -1;
      for (uint32_t j = 0; j < d; j++) {
        uint32_t row = words[v * d + j];
        if (row != 0 && (best < 0 || row < words[v * d + (uint32_t)best])) best = j;
      }
      if (best >= 0) {
        float value;
        memcpy(&value, &words[(2 + v) * d + (uint32_t)best], sizeof value);
        found = (vicreg_non_finite){v == 0 ? 'A' : 'B', words[v * d + (uint32_t)best] - 1, (uint32_t)best, value};
        located = 1;
      }
    }
    vic->non_finite = found;
    char value[32];
    status = fail(vic, VICREG_ERROR_NON_FINITE, "%c[%u, %u] is %s (view %c, row %u, column %u): inputs must be finite", found.view, found.row, found.column,
                  float_text(found.value, value, sizeof value), found.view, found.row, found.column);
  }
  free(words);
  return status;
}

static void bind_result(formula_env *env, const cJSON *fields, const float result[8]) {
  int i = 0;
  const cJSON *field;
  cJSON_ArrayForEach(field, fields) {
    if (i < 8 && cJSON_IsString(field)) formula_bind(env, field->valuestring, result[i]);
    i++;
  }
}

static void forget_forward(vicreg_context *vic) {
  release_buffers(&vic->buffers);
  vic->saved = 0;
}

/* ---- The API ---------------------------------------------------------------------------------- */

void vicreg_options_init(vicreg_options *options) {
  memset(options, 0, sizeof *options);
  options->lambda = 25;
  options->mu = 25;
  options->nu = 1;
  options->gamma = 1;
  options->eps = 1e-4;
  options->preset = "paper";
  options->form = "auto";
  options->variant = "auto";
}

static vicreg_status check_options(vicreg_context *vic, const vicreg_options *o) {
  const double values[] = {o->lambda, o->mu, o->nu, o->gamma, o->eps};
  const char *names[] = {"lambda", "mu", "nu", "gamma", "eps"};
  for (int i = 0; i < 5; i++) {
    if (!isfinite(values[i]) || values[i] < 0) return fail(vic, VICREG_ERROR_OPTION, "option %s must be a finite number >= 0, got %g", names[i], values[i]);
  }
  const char *preset = o->preset ? o->preset : "paper", *form = o->form ? o->form : "auto", *variant = o->variant ? o->variant : "auto";
  if (strcmp(preset, "paper") != 0 && strcmp(preset, "official") != 0) return fail(vic, VICREG_ERROR_OPTION, "option preset must be 'paper' or 'official', got '%s'", preset);
  if (strcmp(form, "auto") != 0 && strcmp(form, "primal") != 0 && strcmp(form, "dual") != 0) return fail(vic, VICREG_ERROR_OPTION, "option form must be 'auto', 'primal' or 'dual', got '%s'", form);
  if (strlen(variant) >= sizeof vic->variant) return fail(vic, VICREG_ERROR_OPTION, "option variant '%s' is not a variant", variant);
  if (!o->kernels_dir) return fail(vic, VICREG_ERROR_OPTION, "option kernels_dir is required: the directory with manifest.json and the kernels");
  const char *dtype = o->dtype ? o->dtype : "float32", *grad_dtype = o->grad_dtype ? o->grad_dtype : dtype;
  for (int i = 0; i < 2; i++) {
    const char *value = i == 0 ? dtype : grad_dtype;
    if (strcmp(value, "float32") != 0 && strcmp(value, "float16") != 0) {
      return fail(vic, VICREG_ERROR_OPTION, "option %s must be 'float32' or 'float16', got '%s'", i == 0 ? "dtype" : "grad_dtype", value);
    }
  }
  vic->half_views = strcmp(dtype, "float16") == 0;
  vic->half_grads = strcmp(grad_dtype, "float16") == 0;
  snprintf(vic->preset, sizeof vic->preset, "%s", preset);
  snprintf(vic->form, sizeof vic->form, "%s", form);
  snprintf(vic->variant, sizeof vic->variant, "%s", variant);
  return VICREG_OK;
}

vicreg_status vicreg_create(const vicreg_options *options, WGPUInstance instance, WGPUDevice device, vicreg_context **out) {
  vicreg_context *vic = calloc(1, sizeof *vic);
  *out = vic;
  if (!vic) return VICREG_ERROR_MEMORY;
  vicreg_options defaults;
  vicreg_options_init(&defaults);
  vic->options = options ? *options : defaults;
  vicreg_status status = check_options(vic, &vic->options);
  if (status != VICREG_OK) return status;
  if (!(vic->kernels_dir = strdup(vic->options.kernels_dir))) return fail(vic, VICREG_ERROR_MEMORY, "out of host memory");
  char *text = read_text(vic->kernels_dir, "manifest.json");
  if (!text) return fail(vic, VICREG_ERROR_KERNELS, "cannot read %s/manifest.json", vic->kernels_dir);
  vic->manifest = cJSON_Parse(text);
  free(text);
  if (!vic->manifest || !item(item(vic->manifest, "loss"), "plans")) return fail(vic, VICREG_ERROR_KERNELS, "%s/manifest.json is not a kernels manifest", vic->kernels_dir);
  vic->float16 = item(item(vic->manifest, "loss"), "float16");
  if ((vic->half_views || vic->half_grads) && !vic->float16) return fail(vic, VICREG_ERROR_KERNELS, "%s/manifest.json has no float16 passes", vic->kernels_dir);
  if (device) {
    if (!instance) return fail(vic, VICREG_ERROR_OPTION, "a caller's device needs the instance it came from, to wait on its futures");
    wgpuInstanceAddRef(instance);
    wgpuDeviceAddRef(device);
    vic->instance = instance;
    vic->device = device;
  } else {
    vic->owns_device = 1;
    if ((status = create_device(vic)) != VICREG_OK) return status;
  }
  return read_device(vic);
}

vicreg_status vicreg_forward(vicreg_context *vic, WGPUBuffer a, WGPUBuffer b, uint32_t n, uint32_t d, vicreg_terms *terms) {
  if (!vic || !vic->device) return vic ? fail(vic, VICREG_ERROR_STATE, "the context has no device") : VICREG_ERROR_STATE;
  vic->message[0] = '\0';
  forget_forward(vic);
  if (vic->device_lost) return fail(vic, VICREG_ERROR_DEVICE, "the device was lost");
  if (!a || !b) return fail(vic, VICREG_ERROR_BUFFER, "forward needs two buffers");
  vic->n = n;
  vic->d = d;
  formula_env env = {0};
  const cJSON *preset = item(item(item(vic->manifest, "coefficients"), "presets"), vic->preset);
  double k;
  vicreg_status status = evaluate(vic, text_of(preset, "k"), &env, &k);
  if (status != VICREG_OK) return status;
  formula_bind(&env, "n", n);
  formula_bind(&env, "d", d);
  formula_bind(&env, "lambda", vic->options.lambda);
  formula_bind(&env, "mu", vic->options.mu);
  formula_bind(&env, "nu", vic->options.nu);
  formula_bind(&env, "gamma", vic->options.gamma);
  formula_bind(&env, "eps", vic->options.eps);
  formula_bind(&env, "k", k);
  formula_bind(&env, "lanes", vic->lanes);
  formula_bind(&env, "maxLanes", vic->max_lanes);
  formula_bind(&env, "maxBinding", (double)vic->max_binding);

  const cJSON *rule;
  cJSON_ArrayForEach(rule, item(item(host_rules(vic), "shape"), "require")) {
    double holds;
    if ((status = evaluate(vic, cJSON_GetStringValue(rule), &env, &holds)) != VICREG_OK) return status;
    if (!holds) return fail(vic, VICREG_ERROR_SHAPE, "shape [%u, %u] fails %s (n >= 2 rows, d >= 1 columns)", n, d, cJSON_GetStringValue(rule));
  }
  uint64_t view_bytes = (uint64_t)4 * n * d;
  const WGPUBuffer views[2] = {a, b};
  for (int v = 0; v < 2; v++) {
    uint64_t needed = element_bytes(vic->half_views, n, d);
    if (wgpuBufferGetSize(views[v]) < needed) {
      return fail(vic, VICREG_ERROR_SHAPE, "view %c is a buffer of %llu bytes; shape [%u, %u] %s needs %llu", 'A' + v,
                  (unsigned long long)wgpuBufferGetSize(views[v]), n, d, vic->half_views ? "float16" : "float32", (unsigned long long)needed);
    }
    if (!(wgpuBufferGetUsage(views[v]) & WGPUBufferUsage_Storage)) return fail(vic, VICREG_ERROR_BUFFER, "view %c lacks Storage usage; the kernels read it as storage", 'A' + v);
  }
  if (view_bytes > vic->max_binding) {
    return fail(vic, VICREG_ERROR_LIMIT, "a view of [%u, %u] float32 is %llu bytes, over the binding limit of %llu bytes", n, d,
                (unsigned long long)view_bytes, (unsigned long long)vic->max_binding);
  }

  const cJSON *plan = NULL;
  const char *variant = NULL;
  if ((status = choose_plan(vic, &env, &plan, &variant)) != VICREG_OK) return status;
  double dual_when;
  if ((status = evaluate(vic, text_of(item(host_rules(vic), "formChoice"), "dualWhen"), &env, &dual_when)) != VICREG_OK) return status;
  const char *form = strcmp(vic->form, "auto") != 0 ? vic->form : dual_when ? "dual" : "primal";
  if ((status = form_plan_for(vic, plan, form, &env, &form)) != VICREG_OK) return status;

  const cJSON *fields = item(item(host_rules(vic), "result"), "fields");
  const cJSON *fallback = item(host_rules(vic), "fallback");
  float result[8];
  formula_env form_env = env;
  if ((status = run_forward(vic, item(plan, form), a, b, &form_env, &vic->buffers, result)) != VICREG_OK) return status;
  formula_env result_env = {0};
  bind_result(&result_env, fields, result);
  double non_finite;
  if ((status = evaluate(vic, text_of(item(host_rules(vic), "nonFinite"), "when"), &result_env, &non_finite)) != VICREG_OK) return status;
  if (non_finite) {
    status = locate_non_finite(vic, &vic->buffers, d);
    forget_forward(vic);
    return status;
  }
  int fell_back = 0;
  if (fallback && strcmp(form, text_of(fallback, "from") ? text_of(fallback, "from") : "") == 0) {
    formula_bind(&result_env, "minDualShare", cJSON_GetNumberValue(item(fallback, "minDualShare")));
    double keep;
    if ((status = evaluate(vic, text_of(fallback, "keepWhen"), &result_env, &keep)) != VICREG_OK) return status;
    if (!keep) {
      fell_back = 1;
      forget_forward(vic);
      if ((status = form_plan_for(vic, plan, text_of(fallback, "to"), &env, &form)) != VICREG_OK) return status;
      form_env = env;
      if ((status = run_forward(vic, item(plan, form), a, b, &form_env, &vic->buffers, result)) != VICREG_OK) return status;
    }
  }
  const char *names[] = {"loss", "invariance", "variance", "covariance"};
  for (int i = 0; i < 4; i++) {
    if (!isfinite(result[i])) {
      char value[32];
      forget_forward(vic);
      return fail(vic, VICREG_ERROR_OVERFLOW, "the %s term overflowed float32 (%s) although every input is finite: the features' spread is too large "
                  "(keep their standard deviations below 1.5e9/sqrt(d))", names[i], float_text(result[i], value, sizeof value));
    }
  }
  if (terms) *terms = (vicreg_terms){result[0], result[1], result[2], result[3]};
  vic->saved = 1;
  vic->plan = plan;
  vic->env = form_env;
  snprintf(vic->saved_form, sizeof vic->saved_form, "%s", form);
  snprintf(vic->plan_form, sizeof vic->plan_form, "%s", form);
  snprintf(vic->plan_variant, sizeof vic->plan_variant, "%s", variant);
  vic->fell_back = fell_back;
  return VICREG_OK;
}

vicreg_status vicreg_backward(vicreg_context *vic, WGPUBuffer grad_a, WGPUBuffer grad_b, float upstream, int accumulate) {
  if (!vic) return VICREG_ERROR_STATE;
  vic->message[0] = '\0';
  if (!vic->saved) return fail(vic, VICREG_ERROR_STATE, "backward needs a successful forward before it");
  if (vic->device_lost) return fail(vic, VICREG_ERROR_DEVICE, "the device was lost");
  if (!isfinite(upstream)) return fail(vic, VICREG_ERROR_OPTION, "the upstream gradient must be finite");
  uint64_t grad_bytes = element_bytes(vic->half_grads, vic->n, vic->d);
  const WGPUBuffer grads[2] = {grad_a, grad_b};
  for (int v = 0; v < 2; v++) {
    if (!grads[v]) return fail(vic, VICREG_ERROR_BUFFER, "backward needs two gradient buffers");
    if (wgpuBufferGetSize(grads[v]) < grad_bytes) {
      return fail(vic, VICREG_ERROR_SHAPE, "grad%c is a buffer of %llu bytes; shape [%u, %u] %s needs %llu", 'A' + v,
                  (unsigned long long)wgpuBufferGetSize(grads[v]), vic->n, vic->d, vic->half_grads ? "float16" : "float32", (unsigned long long)grad_bytes);
    }
    if (!(wgpuBufferGetUsage(grads[v]) & WGPUBufferUsage_Storage)) return fail(vic, VICREG_ERROR_BUFFER, "grad%c lacks Storage usage; the kernels write it as storage", 'A' + v);
  }
  if (grad_a == grad_b) return fail(vic, VICREG_ERROR_BUFFER, "gradA and gradB must be different buffers");
  buffer_set set = vic->buffers;
  set.count = vic->buffers.count;
  if (add_buffer(&set, vic->half_grads ? "gradA16" : "gradA", grad_a, 0) != 0 || add_buffer(&set, vic->half_grads ? "gradB16" : "gradB", grad_b, 0) != 0) {
    return fail(vic, VICREG_ERROR_KERNELS, "too many buffers");
  }
  WGPUBuffer upstream_buffer = buffer_named(&set, "upstream");
  if (!upstream_buffer) return fail(vic, VICREG_ERROR_KERNELS, "kernels/manifest.json: the plan has no upstream buffer");
  const cJSON *form_plan = item(vic->plan, vic->saved_form);
  push_scopes(vic);
  wgpuQueueWriteBuffer(vic->queue, upstream_buffer, 0, &upstream, sizeof upstream);
  buffer_set temporaries = {0};
  WGPUCommandEncoder encoder = wgpuDeviceCreateCommandEncoder(vic->device, NULL);
  /* float16 gradients: the plan's passes write float32 ones, which loss.float16's passes round (and add). */
  WGPUBuffer overflow = vic->half_grads ? buffer_named(&set, "overflow") : NULL;
  if (overflow) wgpuCommandEncoderClearBuffer(encoder, overflow, 0, 4);
  vicreg_status status = encode_steps(vic, encoder, item(form_plan, "backward"), form_plan, &set, &vic->env, accumulate && !vic->half_grads, &temporaries);
  if (status == VICREG_OK && vic->half_grads) status = encode_steps(vic, encoder, item(vic->float16, "backward"), vic->float16, &set, &vic->env, accumulate, &temporaries);
  if (status == VICREG_OK) submit(vic, encoder);
  wgpuCommandEncoderRelease(encoder);
  vicreg_status scopes = pop_scopes(vic, "backward");
  release_buffers(&temporaries);
  return status != VICREG_OK ? status : scopes;
}

vicreg_status vicreg_gradient_overflow(vicreg_context *vic, int *overflow) {
  if (!vic) return VICREG_ERROR_STATE;
  WGPUBuffer flag = vic->half_grads && vic->saved ? buffer_named(&vic->buffers, "overflow") : NULL;
  if (!flag) return fail(vic, VICREG_ERROR_STATE, "the overflow flag belongs to float16 gradients, after a forward");
  uint32_t value = 0;
  vicreg_status status = vicreg_read(vic, flag, 0, sizeof value, &value);
  if (status == VICREG_OK) *overflow = value != 0;
  return status;
}

const char *vicreg_message(const vicreg_context *vic) { return vic ? vic->message : "out of host memory"; }
vicreg_non_finite vicreg_last_non_finite(const vicreg_context *vic) { return vic->non_finite; }
vicreg_plan vicreg_last_plan(const vicreg_context *vic) {
  vicreg_plan plan = {vic->plan_form, vic->plan_variant, vic->fell_back};
  return plan;
}
WGPUDevice vicreg_device(const vicreg_context *vic) { return vic->device; }
WGPUInstance vicreg_instance(const vicreg_context *vic) { return vic->instance; }
const char *vicreg_adapter_name(const vicreg_context *vic) { return vic->adapter_name; }

void vicreg_destroy(vicreg_context *vic) {
  if (!vic) return;
  forget_forward(vic);
  for (size_t i = 0; i < vic->pipeline_count; i++) {
    free(vic->pipelines[i].key);
    wgpuBindGroupLayoutRelease(vic->pipelines[i].layout);
    wgpuComputePipelineRelease(vic->pipelines[i].pipeline);
  }
  free(vic->pipelines);
  if (vic->queue) wgpuQueueRelease(vic->queue);
  if (vic->device) {
    if (vic->owns_device) wgpuDeviceDestroy(vic->device);
    wgpuDeviceRelease(vic->device);
  }
  if (vic->adapter) wgpuAdapterRelease(vic->adapter);
  if (vic->instance) {
    /* Lets Dawn run the callbacks the device's destruction queued before the instance goes. */
    if (vic->owns_device) wgpuInstanceProcessEvents(vic->instance);
    wgpuInstanceRelease(vic->instance);
  }
  cJSON_Delete(vic->manifest);
  free(vic->kernels_dir);
  free(vic);
}
