// A user's Node program, run by test/package.test.ts against the package installed from its packed
// tarball, typechecked strictly with the library's declarations checked too (skipLibCheck off): the API
// on host arrays and on GPU buffers. Prints one JSON line.
import { globals } from 'webgpu';
import { createVICRegLoss, ShapeError, type VICRegTerms } from 'vicreg-wgsl';

// GPUBufferUsage and the other WebGPU constants, which Node lacks.
Object.assign(globalThis, globals);

const [n, d] = [32, 48];
const a = Float32Array.from({ length: n * d }, (_, i) => Math.sin(0.37 * i));
const b = Float32Array.from({ length: n * d }, (_, i) => Math.sin(0.37 * i) + 0.1 * Math.cos(1.3 * i));
const norm = (x: ArrayLike<number>) => Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0));

const vic = await createVICRegLoss();
const terms: VICRegTerms = await vic.forward(a, b, [n, d]);
const { gradA } = await vic.backward();

const upload = (data: Float32Array<ArrayBuffer>): GPUBuffer => {
  const buffer = vic.device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  vic.device.queue.writeBuffer(buffer, 0, data);
  return buffer;
};
const resident = await vic.forward(upload(a), upload(b), [n, d]);
const residentGrads = await vic.backward<GPUBuffer>();

let badShape = 'none thrown';
try {
  await vic.forward(a, b, [n, d + 1]);
} catch (error) {
  badShape = error instanceof ShapeError ? error.code : String(error);
}

console.log(JSON.stringify({
  n, d, adapter: vic.adapterName, loss: terms.loss, residentLoss: resident.loss, gradNormA: norm(gradA),
  residentGradBytes: residentGrads.gradA.size, badShape,
}));
vic.destroy();
