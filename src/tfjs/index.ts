// vicreg-wgsl/tfjs: the VICReg loss as a tfjs op, on every tfjs backend. On 'webgpu' it runs the
// engine's kernels on tfjs-backend-webgpu's device: the embeddings reach the kernels as GPU buffers and
// the loss and gradients come back as tensors, with no host copy; gradients (computed with the loss, in
// one encode) flow through tf.customGrad, scaled by the upstream gradient. On any other backend it is the
// slow path, the same loss composed from tfjs ops (composed.ts) and differentiated by tfjs autograd.
import * as tf from '@tensorflow/tfjs-core';
import { DeviceError, ShapeError } from '../errors.js';
import { resolveCoefficients } from '../coefficients.js';
import { validateShape } from '../engine/checks.js';
import { exportVariantChoices, seedVariantChoices, validateVariantChoices } from '../engine/choices.js';
import { createVICRegLossOnDevice } from '../engine/engine.js';
import { deviceHandle } from '../runtime/device.js';
import type { VariantChoices, VICRegLoss, VICRegOptions } from '../types.js';
import { composedVICRegTerms } from './composed.js';

/**
 * The coefficients of the loss (as createVICRegLoss takes them; the device is tfjs's). On backends
 * other than 'webgpu' only the coefficients and `preset` shape the result; the engine's options
 * `form`, `variant`, `encodeFallback` and `variantChoices` are still checked, so a bad one fails on
 * every backend.
 */
export type TfjsVICRegOptions = Omit<VICRegOptions, 'device'>;

const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08;

/** One engine per tfjs device and set of options, made on first use (never destroyed: it lives with the device). */
const engines = new WeakMap<GPUDevice, Map<string, VICRegLoss>>();

const onWebGPU = () => tf.getBackend() === 'webgpu';

function webgpuDevice(): GPUDevice {
  const name = tf.getBackend();
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  if (name !== 'webgpu' || !device) {
    throw new DeviceError(`vicregVariantChoices() reads the device of tfjs's 'webgpu' backend, and the active backend is '${name}': import '@tensorflow/tfjs-backend-webgpu' and await tf.setBackend('webgpu')`);
  }
  return device;
}

function engineFor(device: GPUDevice, options: TfjsVICRegOptions): VICRegLoss {
  // Variant choices seed the device (shared by its engines), so they are not part of an engine's key.
  const { variantChoices, ...engineOptions } = options;
  if (variantChoices !== undefined) {
    validateVariantChoices(variantChoices);
    seedVariantChoices(device, deviceHandle(device).adapterName, variantChoices);
  }
  const key = JSON.stringify({ ...resolveCoefficients(engineOptions), maxBindingSize: engineOptions.maxBindingSize });
  let perDevice = engines.get(device);
  if (!perDevice) engines.set(device, (perDevice = new Map()));
  let engine = perDevice.get(key);
  if (!engine) perDevice.set(key, (engine = createVICRegLossOnDevice(device, engineOptions)));
  return engine;
}

/**
 * The variant choices on tfjs's device: those seeded through the `variantChoices` option, and those
 * measured by engines created on that device (`createVICRegLoss({ device })`). The op itself never
 * runs a trial. Keep the result and pass it back as `variantChoices` in a later process.
 */
export function vicregVariantChoices(): VariantChoices {
  const device = webgpuDevice();
  return exportVariantChoices(device, deviceHandle(device).adapterName);
}

/** A symbolic tensor of tfjs-layers (what apply() returns for tf.input()), described by its shape alone. */
interface SymbolicOutput { readonly name: string; readonly shape: readonly (number | null)[] }

/**
 * What the op takes for a view's embeddings: a tensor, or anything a tfjs model's apply() returns, so that
 * `vicregLoss(model.apply(xa), model.apply(xb))` typechecks. An array must hold exactly one tensor (a
 * single-output model); a symbolic tensor, or an array of several, is a ShapeError.
 */
export type Embeddings = tf.Tensor | readonly tf.Tensor[] | SymbolicOutput | readonly SymbolicOutput[];

/** The tensor of one view's embeddings, or a ShapeError naming what was passed instead. */
function embeddingTensor(z: Embeddings): tf.Tensor {
  const one = Array.isArray(z) && z.length === 1 ? z[0] : z;
  if (one instanceof tf.Tensor) return one;
  const what = Array.isArray(z) ? `an array of ${z.length} outputs (pass the embedding output's tensor)`
    : z !== null && typeof z === 'object' && 'shape' in z && 'name' in z ? `a symbolic tensor (${(z as SymbolicOutput).name}): apply the model to tensors, not to tf.input()`
      : (z as object | null)?.constructor?.name ?? String(z);
  throw new ShapeError(`vicregLoss takes two tf.Tensors, got ${what}`);
}

function checkEmbeddings(za: tf.Tensor, zb: tf.Tensor): [number, number] {
  if (za.rank !== 2 || zb.rank !== 2) throw new ShapeError(`vicregLoss takes two 2-D [n, d] tensors, got shapes [${za.shape}] and [${zb.shape}]`);
  if (za.shape[0] !== zb.shape[0] || za.shape[1] !== zb.shape[1]) {
    throw new ShapeError(`the two views must have the same shape, got [${za.shape}] and [${zb.shape}]`);
  }
  if (za.dtype !== 'float32' || zb.dtype !== 'float32') throw new ShapeError(`vicregLoss takes float32 tensors, got ${za.dtype} and ${zb.dtype}`);
  return validateShape(za.shape);
}

/** The composition's coefficients, after the checks the engine makes of the same options. */
function composedCoefficients(options: TfjsVICRegOptions) {
  if (options.variantChoices !== undefined) validateVariantChoices(options.variantChoices);
  return resolveCoefficients(options);
}

/** The slow path: the terms from tfjs ops on the active backend (tfjs autograd can differentiate them). */
function composedTerms(za: tf.Tensor, zb: tf.Tensor, options: TfjsVICRegOptions) {
  checkEmbeddings(za, zb);
  return composedVICRegTerms(za as tf.Tensor2D, zb as tf.Tensor2D, composedCoefficients(options));
}

/**
 * Runs one encode on tfjs's device: the terms (a [8] tensor in loss_terms' layout) and both gradients
 * (for an upstream gradient of 1) as tensors.
 */
function lossAndGradients(za: tf.Tensor, zb: tf.Tensor, options: TfjsVICRegOptions) {
  const [n, d] = checkEmbeddings(za, zb);
  const device = webgpuDevice();
  const engine = engineFor(device, options);
  // Tensors made from host data live on the CPU until a kernel needs them: upload them first. Then
  // dataToGPU submits tfjs's pending work and hands over buffers the kernels can bind.
  const backend = tf.backend() as unknown as { uploadToGPU?(dataId: object): void };
  for (const z of [za, zb]) backend.uploadToGPU?.(z.dataId);
  const a = za.dataToGPU();
  const b = zb.dataToGPU();
  const grads = [0, 1].map(() => device.createBuffer({ size: n * d * 4, usage: STORAGE | COPY_SRC | COPY_DST }));
  try {
    const pending = engine.encodeSync({ a: a.buffer!, b: b.buffer!, shape: [n, d], gradA: grads[0], gradB: grads[1] });
    try {
      // tfjs copies each buffer into one of its own (and submits that copy) at creation, after our work.
      const result = tf.tensor({ buffer: pending.buffer }, [8], 'float32');
      const gradA = tf.tensor({ buffer: grads[0] }, [n, d], 'float32');
      const gradB = tf.tensor({ buffer: grads[1] }, [n, d], 'float32');
      return { result, gradA, gradB };
    } finally {
      pending.release();
    }
  } finally {
    grads.forEach((g) => g.destroy());
    a.tensorRef.dispose();
    b.tensorRef.dispose();
  }
}

/**
 * The VICReg loss of two [n, d] float32 embeddings (n >= 2), as a scalar tensor with gradients for
 * both. On the 'webgpu' backend it runs the WGSL kernels on tfjs's device (gradients through
 * tf.customGrad). On any other backend (cpu, wasm, webgl, node) it is the slow path: the same loss,
 * presets and coefficients composed from tfjs ops, O(n d^2) with a d x d covariance per view, and
 * differentiated by tfjs autograd; it agrees with the kernels to float32 rounding.
 * Takes what a single-output model's `apply()` returns; a multi-output model's array is a ShapeError
 * (pass the tensor of the embedding output).
 * Non-finite embeddings give a NaN loss, as tfjs ops do, rather than an error; bad shapes are a
 * ShapeError and bad options an OptionError on every backend.
 */
export function vicregLoss(viewA: Embeddings, viewB: Embeddings, options: TfjsVICRegOptions = {}): tf.Scalar {
  const [za, zb] = [embeddingTensor(viewA), embeddingTensor(viewB)];
  if (!onWebGPU()) return tf.tidy(() => composedTerms(za, zb, options).loss);
  const forward = (a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const { result, gradA, gradB } = lossAndGradients(a, b, options);
    const value = tf.reshape(tf.slice(result, [0], [1]), []) as tf.Scalar;
    result.dispose();
    save([gradA, gradB]);
    return { value, gradFunc: (dy: tf.Scalar, saved: tf.Tensor[]) => [tf.mul(saved[0], dy), tf.mul(saved[1], dy)] };
  };
  const op = tf.customGrad(forward as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(za, zb) as tf.Scalar;
}

/**
 * The loss and its three terms, [loss, invariance, variance, covariance], as a tensor (no gradient):
 * from the kernels on 'webgpu', from the tfjs composition (the slow path) elsewhere.
 */
export function vicregTerms(viewA: Embeddings, viewB: Embeddings, options: TfjsVICRegOptions = {}): tf.Tensor1D {
  const [za, zb] = [embeddingTensor(viewA), embeddingTensor(viewB)];
  if (!onWebGPU()) {
    return tf.tidy(() => {
      const { loss, invariance, variance, covariance } = composedTerms(za, zb, options);
      return tf.stack([loss, invariance, variance, covariance]) as tf.Tensor1D;
    });
  }
  const { result, gradA, gradB } = lossAndGradients(za, zb, options);
  const terms = tf.slice(result, [0], [4]) as tf.Tensor1D;
  tf.dispose([result, gradA, gradB]);
  return terms;
}
