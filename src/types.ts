// Public types of the engine.

/** 'paper': variance = v(A) + v(B) (paper Eq. 1). 'official': (v(A) + v(B)) / 2 (facebookresearch/vicreg). */
export type Preset = 'paper' | 'official';

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
  form?: 'auto' | 'primal' | 'dual';
}

/** The loss and its three terms, as defined in docs (loss = lambda*invariance + mu*variance + nu*covariance). */
export interface VICRegTerms {
  loss: number;
  invariance: number;
  variance: number;
  covariance: number;
}

export interface VICRegGradients {
  gradA: Float32Array;
  gradB: Float32Array;
}

export interface ForwardOptions {
  /**
   * Whether a backward() will follow this forward (default true). With false, the forward keeps no
   * matrix for the backward pass (the covariance tiles are reduced and dropped), and backward() rejects.
   */
  grad?: boolean;
}

export interface ForwardPlan {
  n: number;
  d: number;
  /** The form that produced the result. */
  form: 'primal' | 'dual';
  /** True when the dual form ran first and its off-diagonal share was too small, so primal ran too. */
  fellBack: boolean;
  /** The off-diagonal shares of ||C||_F^2 of A and B measured by the dual form (1 when it did not run). */
  offDiagonalShare: [number, number];
}

export interface VICRegLoss {
  /** Computes the loss of two row-major n x d views. */
  forward(a: Float32Array, b: Float32Array, shape: readonly [number, number], options?: ForwardOptions): Promise<VICRegTerms>;
  /** Gradients of the loss of the last forward, times `scale` (an upstream gradient, default 1). */
  backward(scale?: number): Promise<VICRegGradients>;
  /** The adapter in use, in words. */
  readonly adapterName: string;
  /** The resolved coefficients. */
  readonly options: Readonly<Required<Omit<VICRegOptions, 'device'>>>;
  /** How the last successful forward computed the covariance term, and why. */
  readonly lastPlan: ForwardPlan | undefined;
  /** Releases every buffer; destroys the device only if the engine acquired it. */
  destroy(): void;
}
