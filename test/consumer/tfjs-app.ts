// A tfjs user's Node program, run by test/package.test.ts against the installed package: the tfjs op
// on tfjs-backend-webgpu (gradients through tf.grads), an error of the tfjs entry caught as the main
// entry's class, and variant choices an engine measured on tfjs's device as the op sees them. Prints
// one JSON line.
import { create, globals } from 'webgpu';
import * as tf from '@tensorflow/tfjs-core';
import { createVICRegLoss, ShapeError, VICRegError } from 'vicreg-wgsl';
import { vicregLoss, vicregVariantChoices } from 'vicreg-wgsl/tfjs';

// Node has no navigator.gpu: Dawn's stands in, before tfjs-backend-webgpu loads (it registers only then).
Object.assign(globalThis, globals);
Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([]) }, configurable: true });
await import('@tensorflow/tfjs-backend-webgpu');
await tf.setBackend('webgpu');

const [n, d] = [32, 48];
const a = Float32Array.from({ length: n * d }, (_, i) => Math.sin(0.37 * i));
const b = Float32Array.from({ length: n * d }, (_, i) => Math.sin(0.37 * i) + 0.1 * Math.cos(1.3 * i));
const norm = (x: ArrayLike<number>) => Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0));

const tfjsDevice = (tf.backend() as unknown as { device: GPUDevice }).device;
const measuring = await createVICRegLoss({ device: tfjsDevice, variant: 'measure' });
await measuring.forward(a, b, [n, d]);
const choicesSeenByOp = Object.keys(vicregVariantChoices().choices).length;

const za = tf.tensor2d(a, [n, d]);
const zb = tf.tensor2d(b, [n, d]);
const tfjsLoss = (await vicregLoss(za, zb).data())[0];
const [tfjsGradA] = tf.grads((x: tf.Tensor, y: tf.Tensor) => vicregLoss(x, y))([za, zb]);

let errorAcrossEntries = 'none thrown';
try {
  vicregLoss(tf.zeros([n, d]), tf.zeros([n, d + 1]));
} catch (error) {
  errorAcrossEntries = error instanceof ShapeError && error instanceof VICRegError ? error.code : String(error);
}

console.log(JSON.stringify({ n, d, tfjsLoss, tfjsGradNormA: norm(await tfjsGradA.data()), choicesSeenByOp, errorAcrossEntries }));
measuring.destroy();
