// What bench/ab.mjs takes from the bench, bundled by it from the working tree: the bench's inputs and its
// timing statistics (one source each).
export { timingStats } from './measure.js';
export { randomViews } from '../test/reference/float64.js';
