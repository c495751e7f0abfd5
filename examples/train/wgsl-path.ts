// The framework-free path, as a custom autograd takes it: our WGSL layers (mlp.ts) on both views as one
// batch of 2n rows, and the engine's encode() for the loss's gradients, all on the device.
//
//   step   X = [view A; view B]                     (host augmentations, one queue.writeBuffer)
//          Z = expander(encoder(X))                 (mlp.forward)
//          Z_a, Z_b = Z[:n], Z[n:]                  (two buffer copies)
//          dZ_a, dZ_b = dL/dZ_a, dL/dZ_b            (vic.encode, into our buffers)
//          dZ = [dZ_a; dZ_b]                        (two buffer copies)
//          parameters -= Adam(backprop(dZ))         (mlp.backward, mlp.adamStep)
//
// Each step is three submits with a wait after each, so that its time splits into model and loss; the
// loss is read every `logEvery` steps and released unread otherwise.
import type { VICRegLoss } from 'vicreg-wgsl';
import { gaussianSampler, uniformSampler } from '../../src/io/random.js';
import { twoViews } from './augment.js';
import { PIXELS, type Digits } from './digits.js';
import { createMlp, readBuffers, type Mlp, type MlpParameters } from './mlp.js';
import { ADAM, embeddingStats, isLogStep, layersOf, timedMedian, type LossPoint, type PathRecord, type RunSettings } from './model.js';
import { linearProbe } from './probe.js';

const Usage = { COPY_SRC: 0x04, COPY_DST: 0x08, STORAGE: 0x80 } as const;

export interface Progress {
  path: string;
  step: number;
  steps: number;
  point?: LossPoint;
}

/** The batches of a run: the same seed gives the same digits and the same augmentations on every path. */
export function* batches(train: Digits, s: RunSettings): Generator<Float32Array<ArrayBuffer>> {
  const uniform = uniformSampler(s.seed * 7919 + 1);
  const gaussian = gaussianSampler(s.seed * 7919 + 2);
  for (let step = 0; step < s.steps; step++) {
    const rows = Uint32Array.from({ length: s.batch }, () => Math.floor(uniform() * train.count));
    yield twoViews(train.images, rows, s.augmentations, uniform, gaussian);
  }
}

/** The output of layer `layer` for every image, `mlp.rows` images at a time. */
export async function layerOutputs(mlp: Mlp, device: GPUDevice, images: Float32Array, layer: number): Promise<Float32Array> {
  const count = images.length / PIXELS;
  const width = mlp.layers[layer].outputs;
  const out = new Float32Array(count * width);
  for (let start = 0; start < count; start += mlp.rows) {
    const rows = Math.min(mlp.rows, count - start);
    const input = new Float32Array(mlp.rows * PIXELS);
    input.set(images.subarray(start * PIXELS, (start + rows) * PIXELS));
    device.queue.writeBuffer(mlp.input, 0, input);
    const encoder = device.createCommandEncoder();
    mlp.forward(encoder);
    device.queue.submit([encoder.finish()]);
    const [values] = await readBuffers(device, 'layer outputs', [{ buffer: mlp.activation(layer), bytes: rows * width * 4 }]);
    out.set(values, start * width);
  }
  return out;
}

/** The linear probe on the encoder's output (the representation), trained on `train` and scored on `test`. */
export async function probeEncoder(mlp: Mlp, device: GPUDevice, encoderLayers: number, train: Digits, test: Digits, s: RunSettings) {
  const dim = mlp.layers[encoderLayers - 1].outputs;
  const [trainFeatures, testFeatures] = [await layerOutputs(mlp, device, train.images, encoderLayers - 1), await layerOutputs(mlp, device, test.images, encoderLayers - 1)];
  const result = linearProbe({ values: trainFeatures, dim, labels: train.labels }, { values: testFeatures, dim, labels: test.labels }, s.probe);
  return { train: result.trainAccuracy, test: result.testAccuracy };
}

/** The embeddings (the expander's output) of the test digits, as they are: the statistics the loss acts on. */
async function embeddingsOf(mlp: Mlp, device: GPUDevice, test: Digits) {
  const last = mlp.layers.length - 1;
  return embeddingStats(await layerOutputs(mlp, device, test.images, last), test.count, mlp.layers[last].outputs);
}

export interface WgslRun {
  record: PathRecord;
  /** The probe on the untrained encoder (the same initial parameters every path starts from). */
  randomProbe: { train: number; test: number };
}

/** Trains encoder and expander from `init` with the engine's encode(); `vic` is left alive. */
export async function trainWgsl(vic: VICRegLoss, data: { train: Digits; test: Digits }, s: RunSettings, init: MlpParameters, onProgress?: (p: Progress) => void): Promise<WgslRun> {
  const device = vic.device;
  const layers = layersOf(s);
  const [n, d] = [s.batch, layers[layers.length - 1].outputs];
  const mlp = await createMlp(device, { layers, rows: 2 * n, adam: { lr: s.lr, ...ADAM }, init });
  const viewBytes = n * d * 4;
  const buffer = (label: string) => device.createBuffer({ label, size: viewBytes, usage: Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST });
  const [za, zb, dza, dzb] = ['Z_a', 'Z_b', 'dZ_a', 'dZ_b'].map(buffer);
  const output = mlp.activation(layers.length - 1);
  const settled = () => device.queue.onSubmittedWorkDone();
  try {
    const randomProbe = await probeEncoder(mlp, device, s.encoder.length, data.train, data.test, s);
    const before = await embeddingsOf(mlp, device, data.test);
    const curve: LossPoint[] = [];
    const times = { step: [] as { step: number; ms: number }[], model: [] as { step: number; ms: number }[], loss: [] as { step: number; ms: number }[] };
    let step = 0;
    for (const views of batches(data.train, s)) {
      step++;
      const t0 = performance.now();
      device.queue.writeBuffer(mlp.input, 0, views);
      let encoder = device.createCommandEncoder();
      mlp.forward(encoder);
      encoder.copyBufferToBuffer(output, 0, za, 0, viewBytes);
      encoder.copyBufferToBuffer(output, viewBytes, zb, 0, viewBytes);
      device.queue.submit([encoder.finish()]);
      await settled();
      const t1 = performance.now();
      const pending = await vic.encode({ a: za, b: zb, shape: [n, d], gradA: dza, gradB: dzb });
      await settled();
      const t2 = performance.now();
      encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(dza, 0, mlp.outputGrad, 0, viewBytes);
      encoder.copyBufferToBuffer(dzb, 0, mlp.outputGrad, viewBytes, viewBytes);
      mlp.backward(encoder);
      mlp.adamStep(encoder, step);
      device.queue.submit([encoder.finish()]);
      await settled();
      const t3 = performance.now();
      times.step.push({ step, ms: t3 - t0 });
      times.model.push({ step, ms: t1 - t0 + (t3 - t2) });
      times.loss.push({ step, ms: t2 - t1 });
      let point: LossPoint | undefined;
      if (isLogStep(step, s)) {
        const terms = await pending.read();
        point = { step, loss: terms.loss, invariance: terms.invariance, variance: terms.variance, covariance: terms.covariance };
        curve.push(point);
      } else {
        pending.release();
      }
      onProgress?.({ path: 'wgsl', step, steps: s.steps, point });
    }
    const after = await embeddingsOf(mlp, device, data.test);
    const probe = await probeEncoder(mlp, device, s.encoder.length, data.train, data.test, s);
    return {
      randomProbe,
      record: { path: 'wgsl', adapter: vic.adapterName, curve, probe, embeddings: { before, after }, ms: { step: timedMedian(times.step), model: timedMedian(times.model), loss: timedMedian(times.loss) } },
    };
  } finally {
    for (const b of [za, zb, dza, dzb]) b.destroy();
    mlp.destroy();
  }
}
