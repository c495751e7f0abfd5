// vicreg-wgsl/tfjs: the VICReg loss as a tfjs op. It runs the engine's kernels on the device of
// tfjs-backend-webgpu: the embeddings reach the kernels as GPU buffers and the loss and gradients come
// back as tensors, with no host copy. Gradients (computed with the loss, in one encode) flow through
// tf.customGrad, scaled by the upstream gradient.
import * as tf from '@tensorflow/tfjs-core';
import { DeviceError, ShapeError } from '../errors.js';
import { resolveCoefficients } from '../coefficients.js';
import { exportVariantChoices, seedVariantChoices, validateVariantChoices } from '../engine/choices.js';
import { createVICRegLossOnDevice } from '../engine/engine.js';
import { deviceHandle } from '../runtime/device.js';
import type { VariantChoices, VICRegLoss, VICRegOptions } from '../types.js';

/** The coefficients of the loss (as createVICRegLoss takes them; the device is tfjs's). */
export type TfjsVICRegOptions = Omit<VICRegOptions, 'device'>;

const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08;

/** One engine per tfjs device and set of options, made on first use (never destroyed: it lives with the device). */
const engines = new WeakMap<GPUDevice, Map<string, VICRegLoss>>();

function webgpuDevice(): GPUDevice {
  const name = tf.getBackend();
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  if (name !== 'webgpu' || !device) {
    throw new DeviceError(`vicregLoss runs on tfjs's 'webgpu' backend, and the active backend is '${name}': import '@tensorflow/tfjs-backend-webgpu' and await tf.setBackend('webgpu')`);
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

function checkEmbeddings(za: tf.Tensor, zb: tf.Tensor): [number, number] {
  if (za.rank !== 2 || zb.rank !== 2) throw new ShapeError(`vicregLoss takes two 2-D [n, d] tensors, got shapes [${za.shape}] and [${zb.shape}]`);
  if (za.shape[0] !== zb.shape[0] || za.shape[1] !== zb.shape[1]) {
    throw new ShapeError(`the two views must have the same shape, got [${za.shape}] and [${zb.shape}]`);
  }
  if (za.dtype !== 'float32' || zb.dtype !== 'float32') throw new ShapeError(`vicregLoss takes float32 tensors, got ${za.dtype} and ${zb.dtype}`);
  return za.shape as [number, number];
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
 * The VICReg loss of two [n, d] float32 embeddings, as a scalar tensor with gradients for both (through
 * tf.customGrad). Runs only on the 'webgpu' backend (a DeviceError names the active one otherwise).
 * Non-finite embeddings give a NaN loss, as tfjs ops do, rather than an error.
 */
export function vicregLoss(za: tf.Tensor, zb: tf.Tensor, options: TfjsVICRegOptions = {}): tf.Scalar {
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

/** The loss and its three terms, [loss, invariance, variance, covariance], as a tensor (no gradient). */
export function vicregTerms(za: tf.Tensor, zb: tf.Tensor, options: TfjsVICRegOptions = {}): tf.Tensor1D {
  const { result, gradA, gradB } = lossAndGradients(za, zb, options);
  const terms = tf.slice(result, [0], [4]) as tf.Tensor1D;
  tf.dispose([result, gradA, gradB]);
  return terms;
}
