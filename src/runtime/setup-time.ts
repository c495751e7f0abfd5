// Wall time a device spends setting up rather than computing: creating pipelines, and timing variant
// trials ('measure'). The bench reports it beside a first call's time; the engine never reads it.

export interface SetupTime {
  /** Creating shader modules and pipelines outside trials (a driver may compile later, on first dispatch). */
  pipelinesMs: number;
  /** Variant trials, the pipelines they create included. */
  trialsMs: number;
}

type Kind = 'pipelines' | 'trials';
interface Clock { ms: number; inFlight: number; since: number }

const clocks = new WeakMap<GPUDevice, Record<Kind, Clock>>();

function clocksOf(device: GPUDevice): Record<Kind, Clock> {
  let c = clocks.get(device);
  if (!c) clocks.set(device, (c = { pipelines: { ms: 0, inFlight: 0, since: 0 }, trials: { ms: 0, inFlight: 0, since: 0 } }));
  return c;
}

/** The setup time spent on `device` so far. */
export function setupTime(device: GPUDevice): SetupTime {
  const c = clocksOf(device);
  return { pipelinesMs: c.pipelines.ms, trialsMs: c.trials.ms };
}

/**
 * Runs `work`, counting its wall time as `kind` on `device`; overlapping works count once, and pipelines
 * created during a trial count as the trial's.
 */
export async function timedSetup<T>(device: GPUDevice, kind: Kind, work: () => Promise<T>): Promise<T> {
  const c = clocksOf(device);
  const clock = kind === 'pipelines' && c.trials.inFlight > 0 ? undefined : c[kind];
  if (clock && clock.inFlight++ === 0) clock.since = performance.now();
  try {
    return await work();
  } finally {
    if (clock && --clock.inFlight === 0) clock.ms += performance.now() - clock.since;
  }
}
