// The demo chart's comparison: the same VICReg loss written with ordinary tfjs ops and differentiated by
// tf.valueAndGrads, on @tensorflow/tfjs-backend-webgpu. demo.ts imports this module lazily, so the
// tfjs chunk (about 1.3 MB minified) loads only when the chart is drawn.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';

export interface Coefficients {
  lambda: number;
  mu: number;
  nu: number;
  gamma: number;
  eps: number;
  preset: 'paper' | 'official';
}

export interface TfjsStep {
  loss: number;
  gradA: Float32Array;
  gradB: Float32Array;
}

/** Selects tfjs's WebGPU backend (tfjs acquires its own device); returns the backend in use. */
export async function initTfjs(): Promise<string> {
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialize');
  await tf.ready();
  return tf.getBackend();
}

/** Forward + backward from host arrays to host results, like the engine's forward() + backward(). */
export function tfjsVICReg({ lambda, mu, nu, gamma, eps, preset }: Coefficients) {
  const k = preset === 'official' ? 0.5 : 1;
  // The off-diagonal mask is built once per d, outside the timed step, as a tfjs user would.
  let mask: tf.Tensor2D | undefined;

  function loss(a: tf.Tensor2D, b: tf.Tensor2D): tf.Scalar {
    const [n, d] = a.shape;
    const invariance = tf.mean(tf.squaredDifference(a, b));
    // moments gives the biased variance (/n); rescale to the unbiased one (/(n-1)).
    const hinge = (z: tf.Tensor2D) => {
      const std = tf.sqrt(tf.add(tf.mul(tf.moments(z, 0).variance, n / (n - 1)), eps));
      return tf.mean(tf.relu(tf.sub(gamma, std)));
    };
    const offDiagonal = (z: tf.Tensor2D) => {
      const centered = tf.sub(z, tf.mean(z, 0));
      const cov = tf.div(tf.matMul(centered, centered, true, false), n - 1);
      return tf.div(tf.sum(tf.square(tf.mul(cov, mask!))), d);
    };
    const variance = tf.mul(k, tf.add(hinge(a), hinge(b)));
    const covariance = tf.add(offDiagonal(a), offDiagonal(b));
    return tf.addN([tf.mul(lambda, invariance), tf.mul(mu, variance), tf.mul(nu, covariance)]) as tf.Scalar;
  }

  return {
    async step(a: Float32Array, b: Float32Array, n: number, d: number): Promise<TfjsStep> {
      if (mask?.shape[0] !== d) {
        mask?.dispose();
        mask = tf.sub(1, tf.eye(d)) as tf.Tensor2D;
      }
      const [value, gradA, gradB] = tf.tidy(() => {
        const inputs = [tf.tensor2d(a, [n, d]), tf.tensor2d(b, [n, d])];
        const { value, grads } = tf.valueAndGrads((x, y) => loss(x as tf.Tensor2D, y as tf.Tensor2D))(inputs);
        return [value, grads[0], grads[1]];
      });
      const [lossData, gradAData, gradBData] = await Promise.all([value.data(), gradA.data(), gradB.data()]);
      tf.dispose([value, gradA, gradB]);
      return { loss: lossData[0], gradA: gradAData as Float32Array, gradB: gradBData as Float32Array };
    },
    dispose(): void {
      mask?.dispose();
      mask = undefined;
    },
  };
}
