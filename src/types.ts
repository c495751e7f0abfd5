/// <reference types="@webgpu/types" preserve="true" />
// Public types of the engine.

/** 'paper': variance = v(A) + v(B) (paper Eq. 1). 'official': (v(A) + v(B)) / 2 (facebookresearch/vicreg). */
export type Preset = 'paper' | 'official';
export type Form = 'primal' | 'dual';
/** The kernel variants (src/variants/registry.ts describes each). */
export const VARIANT_NAMES = ['tiled', 'subgroup', 'workgroup', 'shuffle', 'windows'] as const;
export type Variant = typeof VARIANT_NAMES[number];

export interface VICRegOptions {
  /** Invariance weight (default 25). */
  lambda?: number;
  /** Variance weight (default 25). */
  mu?: number;
  /** Covariance weight (default 1). */
  nu?: number;
  /** Target standard deviation of each feature (default 1). */
  gamma?: number;
  /** Added to the variance under the square root (default 1e-4). */
  eps?: number;
  /** Convention for the variance term (default 'paper'). */
  preset?: Preset;
  /** A device to run on; the engine never destroys a device it was given. Default: acquire one. */
  device?: GPUDevice;
  /**
   * How the covariance term is computed: 'primal' (the d x d covariance, O(n d^2)), 'dual' (the n x n
   * Gram matrix, O(n^2 d)), or 'auto' (default: the cheaper one, falling back from dual to primal when
   * the dual form would lose float32 accuracy). Forcing 'dual' still falls back where it must.
   */
  form?: 'auto' | Form;
  /**
   * Kernel variant of the Gram and backward kernels (docs/design.md, "Variants"): 'tiled' (register
   * blocks, core WGSL), 'workgroup' (workgroup-memory tiles, core WGSL), 'subgroup' (register blocks
   * shared within quads of a subgroup; needs the 'subgroups' feature, any subgroup size from 4),
   * 'shuffle' and 'windows' (kernels for Mesa's lavapipe: subgroups of exactly 8 and d % 4 == 0;
   * 'windows' also needs two WGSL language features and n <= 4096, and runs 'shuffle' in the primal
   * form). 'auto' (default): the variant measured or seeded for this device and shape class, else the
   * first the device can run in the registry's order, with no trial. 'measure': as 'auto', but the first
   * use of a shape class on a device times every variant that can run it (compiling each: seconds on a
   * CPU adapter) and keeps the fastest, for this device and for `variantChoices()`.
   */
  variant?: 'auto' | 'measure' | Variant;
  /**
   * Variant choices measured before (what `variantChoices()` returned, on this adapter with this build's
   * kernels), so that 'auto' uses them, 'measure' skips their trials, and encodeSync() (which never runs one) uses them. Choices
   * from another adapter or other kernels are skipped; a malformed object is an OptionError.
   */
  variantChoices?: VariantChoices;
  /**
   * encode() on a problem that takes the dual form: 'standby' (default) also keeps the primal d x d
   * matrices on the device (d^2 + d floats, where they fit the binding limit), so that the device itself
   * can switch to the primal form when the dual one would lose float32 accuracy; 'none' keeps only the
   * dual n x n matrices (scratch n^2 + n floats), and read() then rejects with a LimitError on such input.
   * forward() and backward() allocate the primal matrices only when they fall back, either way.
   */
  encodeFallback?: 'standby' | 'none';
  /**
   * For tests of the kernels: fill every scratch and output buffer with NaN (flags with all ones) before
   * each call, so an element a kernel fails to write shows up as a NaN or an error. Slow; off by default.
   */
  poisonScratch?: boolean;
  /**
   * Caps the bytes any one buffer binding may take (default: the device's maxStorageBufferBindingSize).
   * Past it the engine splits the work (the d x d covariance for backward is formed one block of columns
   * at a time) or rejects the problem with a LimitError naming the size and the limit.
   */
  maxBindingSize?: number;
}

/** The options an engine resolved: the coefficients, conventions and choices, with their defaults. */
export type ResolvedOptions = Readonly<Required<Omit<VICRegOptions, 'device' | 'poisonScratch' | 'maxBindingSize' | 'variantChoices'>>>;

/**
 * The measured variant choices of a device, as JSON-ready data (keep it in a file or localStorage; pass
 * it back as the `variantChoices` option).
 */
export interface VariantChoices {
  /** 'vicreg-wgsl/variant-choices/1'. */
  format: string;
  /** The adapter they were measured on (VICRegLoss.adapterName). */
  adapter: string;
  /** The digest of the pipelines (kernel sources and override constants) they were measured with. */
  kernels: string;
  /** Key 'role|form|ceil(log2 n)|ceil(log2 d)|variants that can run' -> the variant chosen. */
  choices: Record<string, Variant>;
}

/**
 * The element type of views and gradients: 'float32', or 'float16' (IEEE binary16: half the memory and
 * the bytes moved, as mixed-precision training keeps activations). Statistics, Gram matrices and every
 * reduction stay float32 either way.
 */
export type Dtype = 'float32' | 'float16';

/** binary16 values on the host: a Float16Array where the runtime has one (typed here by its shape), or a Uint16Array of their bits. */
export interface Float16ArrayLike extends ArrayBufferView {
  readonly length: number;
  readonly BYTES_PER_ELEMENT: 2;
}

/** A view on the host: float32 values, or float16 ones (a Uint16Array of binary16 bits, or a Float16Array). */
export type HostView = Float32Array | Uint16Array | Float16ArrayLike;

/** The loss and its three terms, as defined in docs (loss = lambda*invariance + mu*variance + nu*covariance). */
export interface VICRegTerms {
  loss: number;
  invariance: number;
  variance: number;
  covariance: number;
}

/**
 * Gradients of the loss. Host arrays after a forward on host arrays: Float32Arrays, or with float16
 * gradients Uint16Arrays of binary16 bits (Float16Arrays where the views were). GPUBuffers (n*d
 * elements, owned by the engine, valid until the next backward(), a forward of another shape, or
 * destroy()) after a forward on GPUBuffers: `vic.backward<GPUBuffer>()`.
 */
export interface VICRegGradients<G extends Float32Array | Uint16Array | Float16ArrayLike | GPUBuffer = Float32Array> {
  gradA: G;
  gradB: G;
  /**
   * float16 gradients only: whether one of them rounded to Inf or NaN (the upstream scale too large, as
   * a loss scaler would find it). On the device (a u32, 1 or 0) after a forward on GPUBuffers.
   */
  overflow?: G extends GPUBuffer ? GPUBuffer : boolean;
}

export interface ForwardOptions {
  /**
   * Whether a backward() will follow this forward (default true). With false, the forward keeps no
   * matrix for the backward pass (the covariance tiles are reduced and dropped), and backward() rejects.
   */
  grad?: boolean;
  /**
   * The views' element type. Host arrays say it themselves (a Float32Array is float32; a Uint16Array of
   * binary16 bits or a Float16Array is float16): given anyway, it must agree. GPUBuffers: 'float32'
   * (default), or 'float16' for n*d binary16 values packed two per 4 bytes (the buffer then holds at
   * least ceil(n*d/2)*4 bytes).
   */
  dtype?: Dtype;
}

export interface BackwardOptions {
  /**
   * After a forward on Float32Arrays: copy the gradients into these caller-owned arrays (n*d float32
   * each, not overlapping) and return them, instead of allocating two new arrays per call: a training
   * loop that keeps its gradient arrays allocates nothing per step. Rejected after a forward on
   * GPUBuffers, whose gradients stay on the device. If the call rejects after its checks (a lost
   * device, say), the arrays' contents are unspecified.
   */
  out?: { gradA: Float32Array | Uint16Array | Float16ArrayLike; gradB: Float32Array | Uint16Array | Float16ArrayLike };
  /** The gradients' element type (default: the views'); with 'float16', `out` holds Uint16Arrays or Float16Arrays. */
  dtype?: Dtype;
}

export interface ForwardPlan {
  n: number;
  d: number;
  /** The form that produced the result. */
  form: Form;
  /** The kernel variant of the Gram kernel that produced it. */
  variant: Variant;
  /** True when the dual form ran first and its off-diagonal share was too small, so primal ran too. */
  fellBack: boolean;
  /** The off-diagonal shares of ||C||_F^2 of A and B measured by the dual form (1 when it did not run). */
  offDiagonalShare: [number, number];
}

/** Arguments of encode(): one training step's forward and backward, all on the device. */
export interface EncodeArgs {
  /** The two views: GPUBuffers on this instance's device, usage STORAGE, n*d float32 row-major. */
  a: GPUBuffer;
  b: GPUBuffer;
  shape: readonly [number, number];
  /** Caller-owned gradient buffers (usage STORAGE, n*d float32): overwritten, or added to. */
  gradA: GPUBuffer;
  gradB: GPUBuffer;
  /** Add into gradA/gradB (an autograd accumulating gradients) instead of overwriting (default false). */
  accumulate?: boolean;
  /** Upstream gradient: a number, or a GPUBuffer whose first float32 holds it (usage STORAGE). Default 1. */
  scale?: number | GPUBuffer;
  /** Encode into this encoder and leave submitting to the caller (default: the engine submits). */
  encoder?: GPUCommandEncoder;
  /** The views' element type (default 'float32'); 'float16' buffers hold n*d binary16 values, two per 4 bytes. */
  dtype?: Dtype;
  /**
   * The gradients' element type (default: the views'). With 'float16', gradA and gradB hold binary16
   * values (accumulated in float32, then rounded), and PendingTerms.overflow flags any that overflowed.
   */
  gradDtype?: Dtype;
}

/** The terms of an encode(), with what a loss scaler needs. */
export interface EncodedTerms extends VICRegTerms {
  /** float16 gradients: whether one rounded to Inf or NaN (then skip the step and lower the scale). false for float32 gradients. */
  gradientOverflow: boolean;
}

/** The loss terms of an encode(), left on the device until read. */
export interface PendingTerms {
  /**
   * Maps the terms back (the only wait on the device). Rejects with the typed error a forward() would
   * give (non-finite input, overflow) for this call. Releases the call's buffers; later calls return the
   * same terms.
   */
  read(): Promise<EncodedTerms>;
  /** The device buffer with the terms: 8 float32, [loss, invariance, variance, covariance, flags, ...]. */
  readonly buffer: GPUBuffer;
  /**
   * float16 gradients: a u32 on the device, 1 where a gradient this call wrote is Inf or NaN, else 0, for
   * the caller's next pass (an optimizer step that skips itself) without a wait; valid until read() or
   * release(). Undefined with float32 gradients.
   */
  readonly overflow: GPUBuffer | undefined;
  /** Releases the call's buffers without reading (idempotent). */
  release(): void;
}

export interface VICRegLoss {
  /**
   * Computes the loss of two row-major n x d views, float32 or float16 (options.dtype): host arrays, or
   * GPUBuffers on this instance's device (usage STORAGE; nothing of size n x d then crosses to the host).
   */
  forward(a: HostView | GPUBuffer, b: HostView | GPUBuffer, shape: readonly [number, number], options?: ForwardOptions): Promise<VICRegTerms>;
  /**
   * Gradients of the loss of the last forward, times `scale` (an upstream gradient, default 1); with
   * `options.out`, written into the caller's arrays.
   */
  backward<G extends Float32Array | Uint16Array | Float16ArrayLike | GPUBuffer = Float32Array>(scale?: number, options?: BackwardOptions): Promise<VICRegGradients<G>>;
  /**
   * Encodes the forward and backward passes of one step on GPUBuffers, writing the gradients into the
   * caller's buffers, with no wait on the device (the dual form's accuracy fallback is decided on the
   * device too). Resolves once encoded (and submitted unless `encoder` was given).
   */
  encode(args: EncodeArgs): Promise<PendingTerms>;
  /**
   * encode() for frameworks whose ops are synchronous (the tfjs op): nothing is awaited; pipelines compile
   * synchronously on first use, and the kernel variant is the cached choice or the static preference.
   * Must not overlap pending forward/backward/encode calls on the same instance (StateError).
   */
  encodeSync(args: EncodeArgs): PendingTerms;
  /** The device the engine runs on (create input buffers on it). */
  readonly device: GPUDevice;
  /** The adapter in use, in words. */
  readonly adapterName: string;
  /** The resolved coefficients. */
  readonly options: ResolvedOptions;
  /** How the last successful forward computed the covariance term, and why. */
  readonly lastPlan: ForwardPlan | undefined;
  /**
   * The variant choices made on this device so far (measured by 'measure' trials, and seeded ones; not the
   * static preference taken where no trial runs), to keep and pass back as the `variantChoices` option.
   */
  variantChoices(): VariantChoices;
  /** Releases every buffer; destroys the device only if the engine acquired it. */
  destroy(): void;
}
