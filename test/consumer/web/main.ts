// A user's web app, bundled by test/package.test.ts with esbuild and with Vite (each with its default
// settings) against the installed package, and run in Chromium: the loss from the main entry and from
// the tfjs op, on navigator.gpu. The page publishes its result as window.__result.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgpu';
import { createVICRegLoss, VICRegError } from 'vicreg-wgsl';
import { vicregLoss } from 'vicreg-wgsl/tfjs';

type Result = { loss: number; tfjsLoss: number; adapter: string; errorAcrossEntries: string } | { error: string };
const publish = (result: Result) => ((window as unknown as { __result: Result }).__result = result);

async function run(): Promise<Result> {
  const [n, d] = [32, 48];
  const a = Float32Array.from({ length: n * d }, (_, i) => Math.sin(0.37 * i));
  const b = Float32Array.from({ length: n * d }, (_, i) => Math.sin(0.37 * i) + 0.1 * Math.cos(1.3 * i));
  const vic = await createVICRegLoss();
  const { loss } = await vic.forward(a, b, [n, d]);
  await tf.setBackend('webgpu');
  const tfjsLoss = (await vicregLoss(tf.tensor2d(a, [n, d]), tf.tensor2d(b, [n, d])).data())[0];
  let errorAcrossEntries = 'none thrown';
  try {
    vicregLoss(tf.zeros([n, d]), tf.zeros([n + 1, d]));
  } catch (error) {
    errorAcrossEntries = error instanceof VICRegError ? error.code : String(error);
  }
  return { loss, tfjsLoss, adapter: vic.adapterName, errorAcrossEntries };
}

run().then(publish, (error: unknown) => publish({ error: String(error) }));
