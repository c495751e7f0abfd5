// A small tfjs model trained with the VICReg loss in Node, on WebGPU through Dawn (the `webgpu`
// package). Pass another tfjs backend's name ('cpu') to run the same training on the op's slow path.
// Run it from the repository root after `npm run build` (the bundle must sit inside the repository, so
// that Node resolves 'vicreg-wgsl/tfjs' to this package's dist/ and the rest from node_modules):
//   npx esbuild examples/tfjs-node.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=dist/examples/tfjs-node.mjs && node dist/examples/tfjs-node.mjs [webgpu|cpu]
import { create, globals } from 'webgpu';
import * as tf from '@tensorflow/tfjs';
import { vicregLoss, vicregTerms } from 'vicreg-wgsl/tfjs';

const backend = process.argv[2] ?? 'webgpu';

// Node has no navigator.gpu: Dawn's stands in. tfjs-backend-webgpu registers itself only if
// navigator.gpu exists when it loads, so it is imported after this set-up rather than statically.
Object.assign(globalThis, globals);
Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([]) }, configurable: true });
await import('@tensorflow/tfjs-backend-webgpu');
if (!(await tf.setBackend(backend))) throw new Error(`the tfjs backend '${backend}' did not initialize`);

// One batch seen twice: 64 inputs of 8 features, each view with its own noise.
const [n, inputs, hidden, embedding] = [64, 8, 32, 16];
const x = tf.randomNormal([n, inputs], 0, 1, 'float32', 1);
const xa = tf.add(x, tf.randomNormal([n, inputs], 0, 0.1, 'float32', 2));
const xb = tf.add(x, tf.randomNormal([n, inputs], 0, 0.1, 'float32', 3));

const model = tf.sequential({
  layers: [
    tf.layers.dense({ inputShape: [inputs], units: hidden, activation: 'relu', kernelInitializer: tf.initializers.glorotNormal({ seed: 4 }) }),
    tf.layers.dense({ units: embedding, kernelInitializer: tf.initializers.glorotNormal({ seed: 5 }) }),
  ],
});

const optimizer = tf.train.adam(0.01);
for (let step = 0; step <= 30; step++) {
  const loss = optimizer.minimize(() => vicregLoss(model.apply(xa), model.apply(xb), { preset: 'official' }), true)!;
  if (step % 5 === 0) console.log(`step ${step}: loss ${(await loss.data())[0].toFixed(4)}`);
  loss.dispose();
}

const terms = tf.tidy(() => vicregTerms(model.apply(xa), model.apply(xb), { preset: 'official' }));
const [total, invariance, variance, covariance] = await terms.data();
console.log(`on '${tf.getBackend()}': loss ${total.toFixed(4)} (invariance ${invariance.toFixed(4)}, variance ${variance.toFixed(4)}, covariance ${covariance.toFixed(4)})`);
