// The MLP of the training example (examples/train/mlp.ts) against a float64 reference written here: forward
// activations, the gradients of a given output gradient, and two Adam steps, on shapes that are not tile
// multiples, with NaN-poisoned activations (every element must be written); and bitwise reproducibility.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMlp, type DenseLayer, type Mlp, type MlpParameters } from '../examples/train/mlp.js';
import { gaussianSampler } from '../src/io/random.js';
import { acquireDevice, type DeviceHandle } from '../src/runtime/device.js';

const MAP_READ = 0x01, COPY_DST = 0x08;

let handle: DeviceHandle;
let device: GPUDevice;
beforeAll(async () => {
  handle = await acquireDevice();
  device = handle.device;
});
afterAll(() => handle?.device.destroy());

// ---------------------------------------------------------------------------------------------------
// The float64 reference.

type Matrix = Float64Array; // row-major

interface RefParams { weights: Float64Array[]; biases: Float64Array[] }

/** Every layer's output (after its ReLU) for input x (rows x layers[0].inputs). */
function refForward(layers: readonly DenseLayer[], p: RefParams, x: ArrayLike<number>, rows: number): Matrix[] {
  const outs: Matrix[] = [];
  let input: ArrayLike<number> = x;
  layers.forEach(({ inputs, outputs, relu }, l) => {
    const y = new Float64Array(rows * outputs);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < outputs; j++) {
        let s = p.biases[l][j];
        for (let k = 0; k < inputs; k++) s += input[i * inputs + k] * p.weights[l][k * outputs + j];
        y[i * outputs + j] = relu ? Math.max(s, 0) : s;
      }
    }
    outs.push(y);
    input = y;
  });
  return outs;
}

/** dL/dW_l and dL/db_l for dL/d(output) = dOut. */
function refBackward(layers: readonly DenseLayer[], p: RefParams, x: ArrayLike<number>, outs: Matrix[], dOut: ArrayLike<number>, rows: number): RefParams {
  const L = layers.length;
  const weights: Float64Array[] = new Array(L), biases: Float64Array[] = new Array(L);
  let dy = Float64Array.from(dOut);
  for (let l = L - 1; l >= 0; l--) {
    const { inputs, outputs, relu } = layers[l];
    const xl: ArrayLike<number> = l === 0 ? x : outs[l - 1];
    const dpre = relu ? dy.map((g, e) => (outs[l][e] > 0 ? g : 0)) : dy;
    const dw = new Float64Array(inputs * outputs), db = new Float64Array(outputs);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < outputs; j++) {
        const g = dpre[i * outputs + j];
        db[j] += g;
        for (let k = 0; k < inputs; k++) dw[k * outputs + j] += xl[i * inputs + k] * g;
      }
    }
    const dx = new Float64Array(rows * inputs);
    for (let i = 0; i < rows; i++) {
      for (let k = 0; k < inputs; k++) {
        let s = 0;
        for (let j = 0; j < outputs; j++) s += dpre[i * outputs + j] * p.weights[l][k * outputs + j];
        dx[i * inputs + k] = s;
      }
    }
    weights[l] = dw;
    biases[l] = db;
    dy = dx;
  }
  return { weights, biases };
}

/** One Adam step in place: m, v moments; t counts from 1. */
function refAdam(param: Float64Array, grad: Float64Array, m: Float64Array, v: Float64Array, t: number, lr: number, b1: number, b2: number, eps: number) {
  for (let e = 0; e < param.length; e++) {
    m[e] = b1 * m[e] + (1 - b1) * grad[e];
    v[e] = b2 * v[e] + (1 - b2) * grad[e] * grad[e];
    param[e] -= (lr * (m[e] / (1 - b1 ** t))) / (Math.sqrt(v[e] / (1 - b2 ** t)) + eps);
  }
}

/** ||got - want|| / ||want|| (NaN anywhere gives NaN, which fails every comparison). */
function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let diff = 0, norm = 0;
  for (let e = 0; e < got.length; e++) {
    diff += (got[e] - want[e]) ** 2;
    norm += want[e] ** 2;
  }
  return Math.sqrt(diff / norm);
}

// ---------------------------------------------------------------------------------------------------
// Device helpers.

async function read(buffer: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({ size: buffer.size, usage: MAP_READ | COPY_DST });
  try {
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MAP_READ);
    return new Float32Array(staging.getMappedRange().slice(0));
  } finally {
    staging.destroy();
  }
}

function submit(record: (encoder: GPUCommandEncoder) => void) {
  const encoder = device.createCommandEncoder();
  record(encoder);
  device.queue.submit([encoder.finish()]);
}

const adam = { lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };

interface Problem {
  layers: DenseLayer[];
  rows: number;
  init: MlpParameters;
  x: Float32Array<ArrayBuffer>;
  dOut: Float32Array<ArrayBuffer>;
}

function problem(rows: number, widths: number[], relus: boolean[], seed: number): Problem {
  const gaussian = gaussianSampler(seed);
  const layers = relus.map((relu, l) => ({ inputs: widths[l], outputs: widths[l + 1], relu }));
  const random = (length: number, scale: number) => Float32Array.from({ length }, () => scale * gaussian());
  return {
    layers, rows,
    init: {
      weights: layers.map(({ inputs, outputs }) => random(inputs * outputs, Math.sqrt(2 / inputs))),
      biases: layers.map(({ outputs }) => random(outputs, 0.1)),
    },
    x: random(rows * widths[0], 1),
    dOut: random(rows * widths[widths.length - 1], 1),
  };
}

function poisonActivations(mlp: Mlp) {
  mlp.layers.forEach((layer, l) => device.queue.writeBuffer(mlp.activation(l), 0, new Float32Array(mlp.rows * layer.outputs).fill(NaN)));
}

// ---------------------------------------------------------------------------------------------------

describe('MLP', () => {
  const cases: [string, Problem][] = [
    ['rows 37, 50 -> 33 relu -> 29 relu -> 17', problem(37, [50, 33, 29, 17], [true, true, false], 1)],
    ['rows 70, 100 -> 40 relu -> 10 relu (masked output layer)', problem(70, [100, 40, 10], [true, true], 2)],
    ['rows 5, 3 -> 1 (one layer, tiny)', problem(5, [3, 1], [false], 3)],
    ['rows 256, 784 -> 128 relu -> 64 (MNIST-like)', problem(256, [784, 128, 64], [true, false], 4)],
  ];

  it.each(cases)('%s: forward, gradients and two Adam steps match float64', async (_, { layers, rows, init, x, dOut }) => {
    device.pushErrorScope('validation');
    const mlp = await createMlp(device, { layers, rows, adam, init });
    try {
      const ref: RefParams = { weights: init.weights.map((w) => Float64Array.from(w)), biases: init.biases.map((b) => Float64Array.from(b)) };
      const moments = [...ref.weights, ...ref.biases].map((p) => ({ m: new Float64Array(p.length), v: new Float64Array(p.length) }));
      device.queue.writeBuffer(mlp.input, 0, x);
      device.queue.writeBuffer(mlp.outputGrad, 0, dOut);

      for (const step of [1, 2]) {
        poisonActivations(mlp);
        submit((encoder) => {
          mlp.forward(encoder);
          mlp.backward(encoder);
        });
        const outs = refForward(layers, ref, x, rows);
        for (let l = 0; l < layers.length; l++) {
          expect(relativeError(await read(mlp.activation(l)), outs[l]), `step ${step} activation ${l}`).toBeLessThan(1e-5);
        }
        const grads = refBackward(layers, ref, x, outs, dOut, rows);
        const got = await mlp.readGradients();
        for (let l = 0; l < layers.length; l++) {
          expect(relativeError(got.weights[l], grads.weights[l]), `step ${step} dW${l}`).toBeLessThan(1e-5);
          expect(relativeError(got.biases[l], grads.biases[l]), `step ${step} db${l}`).toBeLessThan(1e-5);
        }

        const before = await mlp.readParameters();
        submit((encoder) => mlp.adamStep(encoder, step));
        const refParams = [...ref.weights, ...ref.biases];
        [...grads.weights, ...grads.biases].forEach((g, t) => refAdam(refParams[t], g, moments[t].m, moments[t].v, step, adam.lr, adam.beta1, adam.beta2, adam.epsilon));
        const after = await mlp.readParameters();
        const [gotAfter, gotBefore] = [[...after.weights, ...after.biases], [...before.weights, ...before.biases]];
        refParams.forEach((want, t) => {
          expect(relativeError(gotAfter[t], want), `step ${step} parameter ${t}`).toBeLessThan(1e-5);
          // The update itself (about lr per element), compared on its own scale: the host's update of the
          // device's previous parameters against the device's.
          const gotDelta = gotAfter[t].map((p, e) => p - gotBefore[t][e]);
          const wantDelta = want.map((p, e) => p - gotBefore[t][e]);
          expect(relativeError(gotDelta, wantDelta), `step ${step} update of parameter ${t}`).toBeLessThan(1e-3);
        });
      }
    } finally {
      mlp.destroy();
      expect(await device.popErrorScope()).toBeNull();
    }
  });

  /** Two Adam steps from `p`, then a forward: every activation, parameter and gradient. */
  async function trained(p: Problem, vec4Loads = true): Promise<Float32Array[]> {
    const { layers, rows, init, x, dOut } = p;
    {
      const mlp = await createMlp(device, { layers, rows, adam, init, vec4Loads });
      try {
        device.queue.writeBuffer(mlp.input, 0, x);
        device.queue.writeBuffer(mlp.outputGrad, 0, dOut);
        poisonActivations(mlp);
        for (const step of [1, 2]) {
          submit((encoder) => {
            mlp.forward(encoder);
            mlp.backward(encoder);
            mlp.adamStep(encoder, step);
          });
        }
        submit((encoder) => mlp.forward(encoder));
        const activations = await Promise.all(layers.map((_, l) => read(mlp.activation(l))));
        const { weights, biases } = await mlp.readParameters();
        const grads = await mlp.readGradients();
        return [...activations, ...weights, ...biases, ...grads.weights, ...grads.biases];
      } finally {
        mlp.destroy();
      }
    }
  }

  it('is bitwise reproducible', async () => {
    const [first, second] = [await trained(cases[0][1]), await trained(cases[0][1])];
    expect(first.length).toBe(second.length);
    first.forEach((a, t) => {
      expect(a.every(Number.isFinite), `array ${t} finite`).toBe(true);
      expect(Buffer.from(a.buffer).equals(Buffer.from(second[t].buffer)), `array ${t} bitwise`).toBe(true);
    });
  });

  it('gives the same bits with vec4 loads (every row a multiple of 4 floats) as with scalar loads', async () => {
    const p = problem(68, [72, 36, 20, 16], [true, true, false], 91);
    const [vec4, scalar] = [await trained(p), await trained(p, false)];
    vec4.forEach((a, t) => {
      expect(a.every(Number.isFinite), `array ${t} finite`).toBe(true);
      expect(Buffer.from(a.buffer).equals(Buffer.from(scalar[t].buffer)), `array ${t} bitwise`).toBe(true);
    });
  });

  it('refuses inconsistent shapes', async () => {
    const { layers, rows, init } = cases[0][1];
    await expect(createMlp(device, { layers: [layers[0], layers[2]], rows, adam, init })).rejects.toThrow(/layer 1 takes/);
    await expect(createMlp(device, { layers, rows, adam, init: { weights: init.weights, biases: init.biases.slice(1) } })).rejects.toThrow(/biases/);
  });
});
