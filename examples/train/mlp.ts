// A multilayer perceptron on WebGPU with no framework: its own WGSL kernels for the forward pass, the
// backward pass from a gradient of the output (which VICReg's encode() writes into `outputGrad`), and Adam.
//
//   forward    Y_l = X_l W_l + b_l (ReLU where the layer says), X_0 = input, X_{l+1} = Y_l   (kernels/dense.wgsl)
//   backward   dPre_l = dY_l * (Y_l > 0) on ReLU layers, dY_last = outputGrad
//              db_l = column sums of dPre_l                                            (kernels/column_sum.wgsl)
//              dW_l = X_l^T dPre_l                                                     (kernels/dense.wgsl)
//              dPre_{l-1} = (dPre_l W_l^T) * (X_l > 0)  (the mask only if layer l-1 has a ReLU; not for l = 0)
//   update     Adam on every W_l, b_l                                                  (kernels/adam.wgsl)
//
// Every buffer is sized for `rows` rows when the MLP is created, so bind groups are made once and each
// record (forward, backward, adamStep) is one compute pass of fixed dispatches. No float atomics: every
// sum runs in a fixed order, so a run is bitwise reproducible.
import adamSource from './kernels/adam.wgsl';
import columnSumSource from './kernels/column_sum.wgsl';
import denseSource from './kernels/dense.wgsl';

export interface DenseLayer { inputs: number; outputs: number; relu: boolean }
export interface AdamSettings { lr: number; beta1: number; beta2: number; epsilon: number }
/** weights[l]: inputs x outputs row-major (the tfjs dense kernel layout); biases[l]: outputs. */
export interface MlpParameters { weights: Float32Array[]; biases: Float32Array[] }

export interface Mlp {
  readonly layers: readonly DenseLayer[];
  /** Batch rows every buffer is sized for. */
  readonly rows: number;
  /** rows x layers[0].inputs floats; STORAGE | COPY_DST (write it with queue.writeBuffer). */
  readonly input: GPUBuffer;
  /** The output of layer l (after its ReLU if any): rows x layers[l].outputs; STORAGE | COPY_SRC | COPY_DST. */
  activation(l: number): GPUBuffer;
  /** rows x last outputs; STORAGE | COPY_DST | COPY_SRC: dL/d(output) goes here. */
  readonly outputGrad: GPUBuffer;
  /** Records the forward pass: input -> every layer's activation. */
  forward(encoder: GPUCommandEncoder): void;
  /** Records the backward pass from outputGrad to every parameter's gradient (overwritten, not accumulated). */
  backward(encoder: GPUCommandEncoder): void;
  /**
   * Records one Adam update of every parameter from its gradient; `step` counts from 1 (bias correction).
   * The step's bias corrections go to a uniform by queue.writeBuffer now, so record one step per submit.
   */
  adamStep(encoder: GPUCommandEncoder, step: number): void;
  /** Reads the current parameters back. */
  readParameters(): Promise<MlpParameters>;
  /** Reads the gradients of the last backward pass back (dW in `weights`, db in `biases`). */
  readGradients(): Promise<MlpParameters>;
  destroy(): void;
}

export interface MlpOptions {
  layers: readonly DenseLayer[];
  rows: number;
  adam: AdamSettings;
  init: MlpParameters;
  /** false: dense.wgsl's scalar entry point everywhere, even where rows allow vec4 loads (tests compare the two). */
  vec4Loads?: boolean;
}

// GPUBufferUsage / GPUMapMode / GPUShaderStage values (the globals are not defined in Node).
const Usage = { MAP_READ: 0x01, COPY_SRC: 0x04, COPY_DST: 0x08, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_READ_MODE = 0x01;
const COMPUTE_STAGE = 0x4;

/** dense.wgsl's tunables: an 8 x 4 workgroup, K in slices of 16. */
const DENSE = { WG_X: 8, WG_Y: 4, TILE_K: 16 } as const;
/** dense.wgsl's block of C per invocation (a WGSL const: arrays cannot be sized by overrides), so a 64 x 64 tile per workgroup. */
const DENSE_BLOCK = { rows: 16, columns: 8 } as const;
const DENSE_TILE_M = DENSE.WG_Y * DENSE_BLOCK.rows, DENSE_TILE_N = DENSE.WG_X * DENSE_BLOCK.columns;
/** column_sum.wgsl: 64 columns per workgroup, each summed by 4 invocations. */
const COLUMN_SUM = { WG_COLS: 64, WG_ROWS: 4 } as const;
/** adam.wgsl: 256 elements per workgroup. */
const ADAM_WG = 256;
const MAX_WORKGROUPS = 65535;

/** dense.wgsl's EPILOGUE values. */
const Epilogue = { None: 0, Bias: 1, BiasRelu: 2, Mask: 3 } as const;
type Epilogue = (typeof Epilogue)[keyof typeof Epilogue];

interface Dispatch {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number];
}

type Binding = 'read' | 'write' | 'uniform';

/** Copies the first `bytes` of each buffer into one staging buffer and reads them back as float32 arrays. */
export async function readBuffers(device: GPUDevice, label: string, parts: readonly { buffer: GPUBuffer; bytes: number }[]): Promise<Float32Array[]> {
  const total = parts.reduce((sum, p) => sum + p.bytes, 0);
  const staging = device.createBuffer({ label: `${label} readback`, size: total, usage: Usage.MAP_READ | Usage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder({ label: `${label} readback` });
    let offset = 0;
    for (const { buffer, bytes } of parts) {
      encoder.copyBufferToBuffer(buffer, 0, staging, offset, bytes);
      offset += bytes;
    }
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MAP_READ_MODE);
    const all = new Float32Array(staging.getMappedRange().slice(0));
    offset = 0;
    return parts.map(({ bytes }) => all.slice(offset / 4, (offset += bytes) / 4));
  } finally {
    staging.destroy();
  }
}

export async function createMlp(device: GPUDevice, options: MlpOptions): Promise<Mlp> {
  const { layers, rows, adam, init } = options;
  validate(options);
  const L = layers.length;
  const owned: GPUBuffer[] = [];
  try {
    const buffer = (label: string, bytes: number, usage: number, data?: Float32Array | Uint32Array) => {
      const b = device.createBuffer({ label, size: Math.max(4, bytes), usage });
      owned.push(b);
      if (data) device.queue.writeBuffer(b, 0, data as Float32Array<ArrayBuffer>);
      return b;
    };
    const storage = (label: string, floats: number, data?: Float32Array) =>
      buffer(label, floats * 4, Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST, data);
    const uniform = (label: string, data: Uint32Array) => buffer(label, data.byteLength, Usage.UNIFORM | Usage.COPY_DST, data);

    // Explicit layouts (not 'auto'): a binding an override makes dead (the mask of column_sum without MASK)
    // stays in the layout, so one bind-group shape serves every specialisation of a kernel.
    const layoutOf = (label: string, bindings: Binding[]) => {
      const bindGroupLayout = device.createBindGroupLayout({
        label,
        entries: bindings.map((kind, binding) => ({
          binding, visibility: COMPUTE_STAGE,
          buffer: { type: kind === 'read' ? 'read-only-storage' as const : kind === 'write' ? 'storage' as const : 'uniform' as const },
        })),
      });
      return { bindGroupLayout, pipelineLayout: device.createPipelineLayout({ label, bindGroupLayouts: [bindGroupLayout] }) };
    };
    const denseLayout = layoutOf('dense', ['read', 'read', 'write', 'read', 'uniform']);
    const columnSumLayout = layoutOf('column_sum', ['read', 'read', 'write', 'write', 'uniform']);
    const adamLayout = layoutOf('adam', ['write', 'read', 'write', 'write', 'uniform']);

    const pipelines = new Map<string, Promise<GPUComputePipeline>>();
    const pipelineFor = (label: string, code: string, layout: GPUPipelineLayout, constants: Record<string, number>, entryPoint = 'main') => {
      const key = `${label} ${entryPoint} ${JSON.stringify(constants)}`;
      let p = pipelines.get(key);
      if (!p) {
        p = computePipeline(device, key, code, layout, constants, entryPoint);
        pipelines.set(key, p);
      }
      return p;
    };
    const densePipeline = (transA: boolean, transB: boolean, epilogue: Epilogue, vec4: boolean) =>
      pipelineFor('dense', denseSource, denseLayout.pipelineLayout, { TRANS_A: Number(transA), TRANS_B: Number(transB), EPILOGUE: epilogue, ...DENSE },
        vec4 ? 'main_vec4' : 'main');
    const columnSumPipeline = (mask: boolean) =>
      pipelineFor('column_sum', columnSumSource, columnSumLayout.pipelineLayout, { MASK: Number(mask), ...COLUMN_SUM });

    const bindGroup = (layout: GPUBindGroupLayout, label: string, buffers: GPUBuffer[]) =>
      device.createBindGroup({ label, layout, entries: buffers.map((b, binding) => ({ binding, resource: { buffer: b } })) });

    // Buffers. Moments and gradients start at zero (createBuffer zero-fills).
    const input = storage('mlp input', rows * layers[0].inputs);
    const activations = layers.map((layer, l) => storage(`mlp activation ${l}`, rows * layer.outputs));
    const outputGrad = storage('mlp output grad', rows * layers[L - 1].outputs);
    const weights = layers.map((layer, l) => storage(`mlp W${l}`, layer.inputs * layer.outputs, init.weights[l]));
    const biases = layers.map((layer, l) => storage(`mlp b${l}`, layer.outputs, init.biases[l]));
    const weightGrads = layers.map((layer, l) => storage(`mlp dW${l}`, layer.inputs * layer.outputs));
    const biasGrads = layers.map((layer, l) => storage(`mlp db${l}`, layer.outputs));
    // dPre_l: the gradient at layer l's pre-activation. The last layer's is outputGrad itself without a ReLU.
    const preGrads = layers.map((layer, l) =>
      l === L - 1 && !layer.relu ? outputGrad : storage(`mlp dPre${l}`, rows * layer.outputs));
    // Bound where column_sum's MASK is off and the writable `masked` binding must still name a buffer.
    const unusedMasked = storage('mlp column_sum unused', 1);
    const adamSettings = buffer('mlp adam settings', 32, Usage.UNIFORM | Usage.COPY_DST);

    const inputOf = (l: number) => (l === 0 ? input : activations[l - 1]);
    const dense = async (label: string, [a, b, c, aux]: GPUBuffer[], [m, n, k]: number[], transA: boolean, transB: boolean,
      epilogue: Epilogue): Promise<Dispatch> => ({
      // main_vec4 where the stored rows of A and B hold a multiple of 4 floats; main for any shape.
      pipeline: await densePipeline(transA, transB, epilogue, options.vec4Loads !== false && (transA ? m : k) % 4 === 0 && (transB ? k : n) % 4 === 0),
      bindGroup: bindGroup(denseLayout.bindGroupLayout, label, [a, b, c, aux, uniform(`${label} dims`, new Uint32Array([m, n, k, 0]))]),
      workgroups: [Math.ceil(n / DENSE_TILE_N), Math.ceil(m / DENSE_TILE_M)],
    });

    // Forward: Y_l = X_l W_l + b_l (+ ReLU).
    const forwardDispatches = await Promise.all(layers.map((layer, l) =>
      dense(`mlp forward ${l}`, [inputOf(l), weights[l], activations[l], biases[l]], [rows, layer.outputs, layer.inputs], false, false,
        layer.relu ? Epilogue.BiasRelu : Epilogue.Bias)));

    // Backward, last layer first.
    const backwardDispatches: Dispatch[] = [];
    for (let l = L - 1; l >= 0; l--) {
      const layer = layers[l];
      const maskHere = l === L - 1 && layer.relu; // the layers below get their mask from the dense epilogue
      backwardDispatches.push({
        pipeline: await columnSumPipeline(maskHere),
        bindGroup: bindGroup(columnSumLayout.bindGroupLayout, `mlp bias grad ${l}`, [
          maskHere ? outputGrad : preGrads[l], activations[l], maskHere ? preGrads[l] : unusedMasked, biasGrads[l],
          uniform(`mlp bias grad ${l} dims`, new Uint32Array([rows, layer.outputs]))]),
        workgroups: [Math.ceil(layer.outputs / COLUMN_SUM.WG_COLS), 1],
      });
      // dW_l = X_l^T dPre_l: M = inputs, N = outputs, K = rows. (aux is unread: any read-only buffer.)
      backwardDispatches.push(await dense(`mlp weight grad ${l}`, [inputOf(l), preGrads[l], weightGrads[l], biases[l]],
        [layer.inputs, layer.outputs, rows], true, false, Epilogue.None));
      if (l > 0) {
        // dPre_{l-1} = (dPre_l W_l^T) * (X_l > 0): M = rows, N = inputs, K = outputs.
        const below = layers[l - 1];
        backwardDispatches.push(await dense(`mlp input grad ${l}`, [preGrads[l], weights[l], preGrads[l - 1], below.relu ? activations[l - 1] : biases[l]],
          [rows, layer.inputs, layer.outputs], false, true, below.relu ? Epilogue.Mask : Epilogue.None));
      }
    }

    // Adam, one dispatch per tensor, all sharing the settings uniform (the same step for every tensor).
    const adamPipe = await pipelineFor('adam', adamSource, adamLayout.pipelineLayout, { WG: ADAM_WG });
    const adamDispatches: Dispatch[] = [];
    const adamFor = (label: string, param: GPUBuffer, grad: GPUBuffer, count: number) => {
      const m = storage(`${label} m`, count), v = storage(`${label} v`, count);
      const groups = Math.ceil(count / ADAM_WG);
      const x = Math.min(groups, MAX_WORKGROUPS);
      adamDispatches.push({
        pipeline: adamPipe,
        bindGroup: bindGroup(adamLayout.bindGroupLayout, `${label} adam`, [param, grad, m, v, adamSettings]),
        workgroups: [x, Math.ceil(groups / x)],
      });
    };
    layers.forEach((layer, l) => {
      adamFor(`mlp W${l}`, weights[l], weightGrads[l], layer.inputs * layer.outputs);
      adamFor(`mlp b${l}`, biases[l], biasGrads[l], layer.outputs);
    });

    const record = (encoder: GPUCommandEncoder, label: string, dispatches: Dispatch[]) => {
      const pass = encoder.beginComputePass({ label });
      for (const d of dispatches) {
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(...d.workgroups);
      }
      pass.end();
    };

    const readAll = async (label: string, ws: GPUBuffer[], bs: GPUBuffer[]): Promise<MlpParameters> => {
      const all = await readBuffers(device, label, [...ws, ...bs].map((buffer) => ({ buffer, bytes: buffer.size })));
      return { weights: all.slice(0, L), biases: all.slice(L) };
    };

    const settings = new Float32Array(8);
    let destroyed = false;
    return {
      layers: layers.map((layer) => ({ ...layer })),
      rows,
      input,
      outputGrad,
      activation(l) {
        if (!(l >= 0 && l < L && Number.isInteger(l))) throw new RangeError(`activation(${l}): the MLP has layers 0..${L - 1}`);
        return activations[l];
      },
      forward: (encoder) => record(encoder, 'mlp forward', forwardDispatches),
      backward: (encoder) => record(encoder, 'mlp backward', backwardDispatches),
      adamStep(encoder, step) {
        if (!(Number.isInteger(step) && step >= 1)) throw new RangeError(`adamStep: step counts from 1, got ${step}`);
        settings.set([adam.lr, adam.beta1, adam.beta2, adam.epsilon, 1 - adam.beta1 ** step, 1 - adam.beta2 ** step, 0, 0]);
        device.queue.writeBuffer(adamSettings, 0, settings);
        record(encoder, 'mlp adam', adamDispatches);
      },
      readParameters: () => readAll('mlp parameters', weights, biases),
      readGradients: () => readAll('mlp gradients', weightGrads, biasGrads),
      destroy() {
        if (destroyed) return;
        destroyed = true;
        owned.forEach((b) => b.destroy());
      },
    };
  } catch (error) {
    owned.forEach((b) => b.destroy());
    throw error;
  }
}

function validate({ layers, rows, adam, init }: MlpOptions): void {
  if (layers.length === 0) throw new RangeError('createMlp: at least one layer');
  if (!(Number.isInteger(rows) && rows >= 1)) throw new RangeError(`createMlp: rows must be a positive integer, got ${rows}`);
  layers.forEach((layer, l) => {
    if (!(Number.isInteger(layer.inputs) && layer.inputs >= 1 && Number.isInteger(layer.outputs) && layer.outputs >= 1)) {
      throw new RangeError(`createMlp: layer ${l} has ${layer.inputs} inputs and ${layer.outputs} outputs`);
    }
    if (l > 0 && layer.inputs !== layers[l - 1].outputs) {
      throw new RangeError(`createMlp: layer ${l} takes ${layer.inputs} inputs but layer ${l - 1} gives ${layers[l - 1].outputs}`);
    }
    if (init.weights[l]?.length !== layer.inputs * layer.outputs) {
      throw new RangeError(`createMlp: init.weights[${l}] must hold ${layer.inputs} x ${layer.outputs} floats, got ${init.weights[l]?.length}`);
    }
    if (init.biases[l]?.length !== layer.outputs) {
      throw new RangeError(`createMlp: init.biases[${l}] must hold ${layer.outputs} floats, got ${init.biases[l]?.length}`);
    }
  });
  if (init.weights.length !== layers.length || init.biases.length !== layers.length) {
    throw new RangeError(`createMlp: init must hold ${layers.length} weights and biases`);
  }
  const { lr, beta1, beta2, epsilon } = adam;
  if (!(lr > 0 && beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && epsilon >= 0)) {
    throw new RangeError(`createMlp: bad Adam settings ${JSON.stringify(adam)}`);
  }
}

async function computePipeline(device: GPUDevice, label: string, code: string, layout: GPUPipelineLayout,
  constants: Record<string, number>, entryPoint = 'main'): Promise<GPUComputePipeline> {
  const module = device.createShaderModule({ label, code });
  try {
    return await device.createComputePipelineAsync({ label, layout, compute: { module, entryPoint, constants } });
  } catch (error) {
    const messages = (await module.getCompilationInfo()).messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
    throw new Error(`${label}: ${(error as Error).message}${messages.length ? `\n${messages.join('\n')}` : ''}`);
  }
}
