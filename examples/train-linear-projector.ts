// A linear projector trained by VICReg on WebGPU, with no framework: every step runs on the device.
//
//   data     a latent x ~ N(0, I_p) per sample; two views x_a = x + noise, x_b = x + noise (fixed batch)
//   model    z = x W, W: p x d (no bias: VICReg is blind to a shared bias, see below)
//   step     Z_a, Z_b = X_a W, X_b W                  (kernels/matmul.wgsl, one dispatch per view)
//            dZ_a, dZ_b = dL/dZ_a, dL/dZ_b            (vic.encode, into our buffers)
//            dW = X_a^T dZ_a + X_b^T dZ_b             (kernels/weight_gradient.wgsl)
//            W -= lr dW                               (kernels/sgd_update.wgsl)
//
// One command encoder per step holds all of it (vic.encode records into ours), so a step is one submit
// and nothing waits on the device except the loss read every `logEvery` steps.
//
// W starts small (N(0, initStd^2)), so the features start collapsed (std << gamma) and the variance
// hinge dominates the loss; training must raise the feature std toward gamma.
//
// Why no bias: dL/d(bias_j) = sum_i dZ_a[i, j] + dZ_b[i, j]. The variance and covariance gradients are
// column-centered (sum over i is 0) and the invariance gradients of the two views cancel, so the bias
// gradient is exactly 0 and a bias would never move.
//
// Run as a script (examples/README.md):
//   npx esbuild examples/train-linear-projector.ts --bundle --platform=node --format=esm --packages=external \
//     --loader:.wgsl=text --outfile=dist/examples/train-linear-projector.mjs \
//     && node dist/examples/train-linear-projector.mjs
// (The bundle must sit inside the repository: `webgpu` stays external and is resolved from node_modules.)
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createVICRegLoss, type VICRegLoss, type VICRegOptions, type VICRegTerms } from '../src/index.js';
import { gaussianSampler } from '../src/io/random.js';
import matmulSource from './kernels/matmul.wgsl';
import sgdUpdateSource from './kernels/sgd_update.wgsl';
import weightGradientSource from './kernels/weight_gradient.wgsl';

// GPUBufferUsage / GPUMapMode values (the globals are not defined in Node).
const Usage = { MAP_READ: 0x01, COPY_SRC: 0x04, COPY_DST: 0x08, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_READ_MODE = 0x01;

// ---------------------------------------------------------------------------------------------------
// The three kernels of the projector, bound to one shape.

export interface ProjectorShape {
  /** Samples per batch. */
  n: number;
  /** Input dimension (rows of W). */
  p: number;
  /** Embedding dimension (columns of W). */
  d: number;
}

export interface ProjectorKernels {
  /** Records Z = X W (X: n x p, W: p x d, Z: n x d). */
  matmul(encoder: GPUCommandEncoder, x: GPUBuffer, w: GPUBuffer, z: GPUBuffer): void;
  /** Records dW = X_a^T dZ_a + X_b^T dZ_b (p x d), overwriting dW. */
  weightGradient(encoder: GPUCommandEncoder, views: { xa: GPUBuffer; dza: GPUBuffer; xb: GPUBuffer; dzb: GPUBuffer }, dw: GPUBuffer): void;
  /** Records W -= lr dW (p x d), with the lr given at creation. */
  sgdUpdate(encoder: GPUCommandEncoder, w: GPUBuffer, dw: GPUBuffer): void;
  destroy(): void;
}

const TILE = 8; // workgroup_size(8, 8) of matmul.wgsl and weight_gradient.wgsl
const SGD_WORKGROUP = 64; // workgroup_size(64) of sgd_update.wgsl

async function computePipeline(device: GPUDevice, label: string, code: string): Promise<GPUComputePipeline> {
  const module = device.createShaderModule({ label, code });
  try {
    return await device.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint: 'main' } });
  } catch (error) {
    const messages = (await module.getCompilationInfo()).messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
    throw new Error(`${label}.wgsl: ${(error as Error).message}${messages.length ? `\n${messages.join('\n')}` : ''}`);
  }
}

export async function createProjectorKernels(device: GPUDevice, shape: ProjectorShape, lr: number): Promise<ProjectorKernels> {
  const { n, p, d } = shape;
  const [matmul, weightGradient, sgdUpdate] = await Promise.all([
    computePipeline(device, 'matmul', matmulSource),
    computePipeline(device, 'weight_gradient', weightGradientSource),
    computePipeline(device, 'sgd_update', sgdUpdateSource),
  ]);

  // Uniforms: Dims { n, p, d, pad } and Params { count, lr }.
  const dims = device.createBuffer({ label: 'projector dims', size: 16, usage: Usage.UNIFORM | Usage.COPY_DST });
  device.queue.writeBuffer(dims, 0, new Uint32Array([n, p, d, 0]));
  const sgdParams = device.createBuffer({ label: 'sgd params', size: 8, usage: Usage.UNIFORM | Usage.COPY_DST });
  const params = new ArrayBuffer(8);
  new Uint32Array(params, 0, 1)[0] = p * d;
  new Float32Array(params, 4, 1)[0] = lr;
  device.queue.writeBuffer(sgdParams, 0, params);

  const dispatch = (encoder: GPUCommandEncoder, pipeline: GPUComputePipeline, buffers: GPUBuffer[], workgroups: [number, number]) => {
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const pass = encoder.beginComputePass({ label: pipeline.label });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(...workgroups);
    pass.end();
  };

  return {
    matmul: (encoder, x, w, z) => dispatch(encoder, matmul, [x, w, z, dims], [Math.ceil(d / TILE), Math.ceil(n / TILE)]),
    weightGradient: (encoder, { xa, dza, xb, dzb }, dw) =>
      dispatch(encoder, weightGradient, [xa, dza, xb, dzb, dw, dims], [Math.ceil(d / TILE), Math.ceil(p / TILE)]),
    sgdUpdate: (encoder, w, dw) => dispatch(encoder, sgdUpdate, [w, dw, sgdParams], [Math.ceil((p * d) / SGD_WORKGROUP), 1]),
    destroy: () => {
      dims.destroy();
      sgdParams.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Host helpers: seeded Gaussian numbers, the synthetic views, feature std, buffer transfers.

/** Seeded N(0, 1) numbers (the library's demo generator), so a seed gives the same run everywhere. */
export { gaussianSampler };

/** Two views of n latent samples x ~ N(0, I_p): x_a = x + noise * e_a, x_b = x + noise * e_b. */
export function twoViews(n: number, p: number, noise: number, gaussian: () => number): { xa: Float32Array; xb: Float32Array } {
  const xa = new Float32Array(n * p), xb = new Float32Array(n * p);
  for (let e = 0; e < n * p; e++) {
    const latent = gaussian();
    xa[e] = latent + noise * gaussian();
    xb[e] = latent + noise * gaussian();
  }
  return { xa, xb };
}

/** Mean over the d columns of the sample std (unbiased, 1/(n-1)) of an n x d row-major matrix. */
export function meanFeatureStd(z: Float32Array, n: number, d: number): number {
  let total = 0;
  for (let j = 0; j < d; j++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += z[i * d + j];
    mean /= n;
    let squares = 0;
    for (let i = 0; i < n; i++) squares += (z[i * d + j] - mean) ** 2;
    total += Math.sqrt(squares / (n - 1));
  }
  return total / d;
}

export function uploadBuffer(device: GPUDevice, label: string, data: Float32Array): GPUBuffer {
  const buffer = device.createBuffer({ label, size: data.byteLength, usage: Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
  return buffer;
}

/** Copies the first `floats` float32 of a buffer back to the host (waits for the device). */
export async function readBuffer(device: GPUDevice, buffer: GPUBuffer, floats: number, encoder = device.createCommandEncoder()): Promise<Float32Array> {
  const staging = device.createBuffer({ label: `${buffer.label} readback`, size: floats * 4, usage: Usage.MAP_READ | Usage.COPY_DST });
  try {
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, floats * 4);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MAP_READ_MODE);
    return new Float32Array(staging.getMappedRange().slice(0));
  } finally {
    staging.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------
// The training loop.

export interface TrainOptions extends ProjectorShape {
  steps: number;
  /** SGD learning rate. */
  lr: number;
  /** Seeds the data and the initial weights. */
  seed: number;
  /** A VICReg instance to use (kept alive), or options for one created and destroyed here. */
  vic?: VICRegLoss | VICRegOptions;
  /** Std of the per-view noise added to the latent (default 0.1). */
  noise?: number;
  /** Std of the initial weights (default 0.01: collapsed features). */
  initStd?: number;
  /** Read the loss every this many steps (default 10); step 0 and the last step are always read. */
  logEvery?: number;
  /** Called with each loss read. */
  onLog?: (step: number, terms: VICRegTerms) => void;
}

export interface TrainResult {
  /** The losses read, at the steps in `lossSteps` (the loss of W before that step's update). */
  losses: number[];
  lossSteps: number[];
  /** The terms of the last step. */
  lastTerms: VICRegTerms;
  /** Mean feature std of Z (both views, the training batch) with the initial and the final W. */
  stdBefore: number;
  stdAfter: number;
  /** The final weights, p x d row-major. */
  weights: Float32Array;
}

const isVICRegLoss = (x: VICRegLoss | VICRegOptions | undefined): x is VICRegLoss =>
  x !== undefined && typeof (x as VICRegLoss).encode === 'function';

export async function trainLinearProjector(options: TrainOptions): Promise<TrainResult> {
  const { steps, n, p, d, lr, seed, noise = 0.1, initStd = 0.01, logEvery = 10, onLog } = options;
  if (!(steps >= 1)) throw new Error(`steps must be >= 1, got ${steps}`);
  const ownsVic = !isVICRegLoss(options.vic);
  const vic = isVICRegLoss(options.vic) ? options.vic : await createVICRegLoss(options.vic);
  const device = vic.device;
  const buffers: GPUBuffer[] = [];
  let kernels: ProjectorKernels | undefined;
  try {
    const gaussian = gaussianSampler(seed);
    const views = twoViews(n, p, noise, gaussian);
    const initialW = Float32Array.from({ length: p * d }, () => initStd * gaussian());

    const upload = (label: string, data: Float32Array) => {
      const buffer = uploadBuffer(device, label, data);
      buffers.push(buffer);
      return buffer;
    };
    const xa = upload('X_a', views.xa), xb = upload('X_b', views.xb);
    const w = upload('W', initialW);
    const [za, zb, dza, dzb] = ['Z_a', 'Z_b', 'dZ_a', 'dZ_b'].map((label) => upload(label, new Float32Array(n * d)));
    const dw = upload('dW', new Float32Array(p * d));
    kernels = await createProjectorKernels(device, { n, p, d }, lr);
    const k = kernels;

    // Mean feature std of both views with the current W (a read-back of Z; only before and after).
    const featureStd = async () => {
      const encoder = device.createCommandEncoder({ label: 'feature std' });
      k.matmul(encoder, xa, w, za);
      k.matmul(encoder, xb, w, zb);
      const zaHost = await readBuffer(device, za, n * d, encoder);
      const zbHost = await readBuffer(device, zb, n * d);
      return (meanFeatureStd(zaHost, n, d) + meanFeatureStd(zbHost, n, d)) / 2;
    };

    // Our kernels' validation errors (a bad binding, a bad dispatch) are caught here and thrown, instead of
    // only being printed as uncaptured errors. (The engine keeps its own scopes inside this one.)
    device.pushErrorScope('validation');
    let result: TrainResult | undefined;
    try {
      const stdBefore = await featureStd();
      const losses: number[] = [], lossSteps: number[] = [];
      let lastTerms: VICRegTerms | undefined;
      for (let step = 0; step < steps; step++) {
        const encoder = device.createCommandEncoder({ label: `step ${step}` });
        k.matmul(encoder, xa, w, za);
        k.matmul(encoder, xb, w, zb);
        const pending = await vic.encode({ a: za, b: zb, shape: [n, d], gradA: dza, gradB: dzb, encoder });
        k.weightGradient(encoder, { xa, dza, xb, dzb }, dw);
        k.sgdUpdate(encoder, w, dw);
        device.queue.submit([encoder.finish()]);
        // Only the logged steps wait for the device; the others just free the call's small buffers
        // (after the submit: they are used by this step's commands).
        if (step % logEvery === 0 || step === steps - 1) {
          lastTerms = await pending.read();
          losses.push(lastTerms.loss);
          lossSteps.push(step);
          onLog?.(step, lastTerms);
        } else {
          pending.release();
        }
      }
      const stdAfter = await featureStd();
      const weights = await readBuffer(device, w, p * d);
      result = { losses, lossSteps, lastTerms: lastTerms!, stdBefore, stdAfter, weights };
    } finally {
      const error = await device.popErrorScope();
      if (error && result) throw new Error(`WebGPU validation error in the training loop: ${error.message}`);
    }
    return result;
  } finally {
    kernels?.destroy();
    buffers.forEach((b) => b.destroy());
    if (ownsVic) vic.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------
// As a script: train with defaults (or --steps, --n, --p, --d, --lr, --seed), print the loss curve.

async function main() {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '300' },
      n: { type: 'string', default: '128' },
      p: { type: 'string', default: '16' },
      d: { type: 'string', default: '32' },
      lr: { type: 'string', default: '0.05' },
      seed: { type: 'string', default: '1' },
      'log-every': { type: 'string', default: '20' },
    },
  });
  const num = (name: keyof typeof values) => Number(values[name]);
  const vic = await createVICRegLoss();
  console.log(`VICReg on ${vic.adapterName}: lambda ${vic.options.lambda}, mu ${vic.options.mu}, nu ${vic.options.nu}, gamma ${vic.options.gamma}`);
  console.log(`linear projector ${num('p')} -> ${num('d')}, batch ${num('n')}, lr ${num('lr')}, seed ${num('seed')}`);
  const started = performance.now();
  const result = await trainLinearProjector({
    steps: num('steps'), n: num('n'), p: num('p'), d: num('d'), lr: num('lr'), seed: num('seed'), logEvery: num('log-every'), vic,
    onLog: (step, t) => console.log(`step ${String(step).padStart(5)}  loss ${t.loss.toFixed(4).padStart(9)}  `
      + `(invariance ${t.invariance.toFixed(5)}, variance ${t.variance.toFixed(5)}, covariance ${t.covariance.toFixed(5)})`),
  });
  const seconds = (performance.now() - started) / 1000;
  console.log(`mean feature std: ${result.stdBefore.toFixed(5)} before, ${result.stdAfter.toFixed(5)} after (gamma ${vic.options.gamma})`);
  console.log(`${num('steps')} steps in ${seconds.toFixed(2)} s`);
  vic.destroy();
}

// Run main() only when this file (or its bundle) is the entry point, not when imported (tests).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && /train-linear-projector\.[cm]?[jt]s$/.test(process.argv[1])) {
  // Exit explicitly: a live Dawn instance keeps Node running.
  main().then(() => process.exit(0), (error) => {
    console.error(error);
    process.exit(1);
  });
}
