import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../lib/core/clock.js';
import { AdaptiveBulkheadPolicy, isBulkheadRejectedError, type AdaptiveAlgorithm, type AdaptiveLimitOptions } from '../../../lib/policies/bulkhead/index.js';

/**
 * A downstream on the fake clock that serves `capacity` calls at once, each in `latency` ms;
 * calls beyond that wait in its own FIFO queue, so their latency grows with the excess.
 */
class Downstream {
  private busy = 0;
  private readonly waiting: Array<() => void> = [];
  private waitingHead = 0;
  /** Calls inside at once, at most. */
  peak = 0;
  served = 0;

  constructor(
    private readonly clock: FakeClock,
    private capacityNow: number,
    /** Milliseconds a call takes once served. */
    public latency: number,
  ) {}

  get inside(): number {
    return this.busy + this.waiting.length - this.waitingHead;
  }

  set capacity(value: number) {
    this.capacityNow = value;
    this.startWaiting();
  }

  serve(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.peak = Math.max(this.peak, this.inside);
      this.startWaiting();
    });
  }

  private startWaiting(): void {
    while (this.busy < this.capacityNow && this.waitingHead < this.waiting.length) {
      const resolve = this.waiting[this.waitingHead++]!;
      this.busy++;
      this.clock.setTimeout(() => {
        this.busy--;
        this.served++;
        resolve();
        this.startWaiting();
      }, this.latency);
    }
    if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
      this.waiting.splice(0, this.waitingHead);
      this.waitingHead = 0;
    }
  }
}

interface Phase {
  readonly capacity: number;
  readonly seconds: number;
  /** The downstream's base latency in this phase. @default LATENCY */
  readonly latency?: number;
}

interface PhaseFigures {
  readonly capacity: number;
  /** Mean limit over each simulated second of the phase. */
  readonly perSecond: number[];
  /** Mean limit over the phase after `settle` seconds, and its range per second. */
  readonly settledMean: number;
  readonly settledMin: number;
  readonly settledMax: number;
  /** Calls the downstream served per simulated second, after the settling time. */
  readonly throughput: number;
  readonly latency: number;
}

/** Runs promise callbacks queued so far, and the callbacks they queue, to a depth well beyond a call's chain. */
async function settleChains(): Promise<void> {
  for (let i = 0; i < 64; i++) await Promise.resolve();
}

const LATENCY = 10;
const CALLERS = 300;
const SETTLE_SECONDS = 5;

/**
 * Drives a closed loop of `CALLERS` callers (each calls again as soon as its call settles) through
 * an adaptive bulkhead in front of the downstream, on the fake clock, and records the limit
 * every simulated millisecond.
 */
async function simulate(algorithm: AdaptiveAlgorithm, phases: readonly Phase[], extra: AdaptiveLimitOptions = {}): Promise<PhaseFigures[]> {
  const clock = new FakeClock();
  const downstream = new Downstream(clock, phases[0]!.capacity, LATENCY);
  const bulkhead = new AdaptiveBulkheadPolicy({ name: algorithm, maxQueue: CALLERS, adaptive: { algorithm, maxLimit: 200, ...extra } }, { clock });
  const run = { stopped: false };
  const loop = async (): Promise<unknown> => {
    try {
      while (!run.stopped) await bulkhead.execute(() => downstream.serve());
      return 'stopped';
    } catch (error) {
      return error;
    }
  };
  const callers = Array.from({ length: CALLERS }, loop);
  const figures: PhaseFigures[] = [];
  for (const phase of phases) {
    downstream.capacity = phase.capacity;
    downstream.latency = phase.latency ?? LATENCY;
    const perSecond: number[] = [];
    let servedBefore = downstream.served;
    for (let second = 0; second < phase.seconds; second++) {
      if (second === SETTLE_SECONDS) servedBefore = downstream.served;
      let sum = 0;
      for (let ms = 0; ms < 1000; ms++) {
        // Timers due in the same millisecond fire together, then their promise chains run:
        // a macrotask turn per millisecond would make the simulation slower than real time.
        clock.advance(1);
        await settleChains();
        sum += bulkhead.limit;
      }
      perSecond.push(Math.round((sum / 1000) * 10) / 10);
    }
    const settled = perSecond.slice(SETTLE_SECONDS);
    figures.push({
      capacity: phase.capacity,
      perSecond,
      settledMean: Math.round((settled.reduce((a, b) => a + b, 0) / settled.length) * 10) / 10,
      settledMin: Math.min(...settled),
      settledMax: Math.max(...settled),
      throughput: Math.round((downstream.served - servedBefore) / (phase.seconds - SETTLE_SECONDS)),
      latency: downstream.latency,
    });
  }
  run.stopped = true;
  bulkhead.close();
  await clock.runAllAsync();
  // Every caller ends: stopped between two calls, or refused by the closed bulkhead.
  const endings = await Promise.all(callers);
  expect(endings.filter((ending) => ending !== 'stopped' && !(isBulkheadRejectedError(ending) && ending.reason === 'closed'))).toEqual([]);
  expect(bulkhead.stats()).toMatchObject({ active: 0, queued: 0 });
  return figures;
}

const PHASES: readonly Phase[] = [
  { capacity: 20, seconds: Number(process.env.SIM_SECONDS ?? 15) },
  { capacity: 5, seconds: Number(process.env.SIM_SECONDS ?? 15) },
  { capacity: 40, seconds: Number(process.env.SIM_SECONDS ?? 15) },
];

describe.each<AdaptiveAlgorithm>(['gradient', 'aimd'])('adaptive limit convergence (%s)', (algorithm) => {
  it(`converges near the downstream's capacity C and follows it, C 20 → 5 → 40 (L = ${LATENCY} ms, ${CALLERS} closed-loop callers)`, async () => {
    const figures = await simulate(algorithm, PHASES);
    for (const phase of figures) {
      console.log(
        `[adaptive ${algorithm}] C=${phase.capacity}: limit per second ${phase.perSecond.join(' ')} | after ${SETTLE_SECONDS}s mean ${phase.settledMean} ` +
          `(${(phase.settledMean / phase.capacity).toFixed(2)} C), range [${phase.settledMin}, ${phase.settledMax}], throughput ${phase.throughput}/s of ${(phase.capacity * 1000) / LATENCY}/s`,
      );
    }
    for (const phase of figures) {
      const { capacity } = phase;
      // Every simulated second after the settling time, the mean limit lies within [0.7 C, 1.5 C].
      expect(phase.settledMin).toBeGreaterThanOrEqual(0.7 * capacity);
      expect(phase.settledMax).toBeLessThanOrEqual(1.5 * capacity);
      // And the downstream is kept busy: at least 90 % of its capacity is used.
      expect(phase.throughput).toBeGreaterThanOrEqual(0.9 * (capacity * 1000) / LATENCY);
    }
  }, 120_000);
});

describe.each<AdaptiveAlgorithm>(['gradient', 'aimd'])('adaptive limit: a slower downstream (%s)', (algorithm) => {
  // The no-load latency itself grows (10 → 30 ms, same capacity): only re-measuring the minimum
  // RTT tells that from a queue. Without it the limit would shrink towards its minimum for good.
  const phases: readonly Phase[] = [
    { capacity: 20, seconds: 10 },
    { capacity: 20, seconds: 15, latency: 30 },
  ];

  it('re-measures the minimum RTT and returns near C when the base latency rises', async () => {
    const figures = await simulate(algorithm, phases);
    const slower = figures[1]!;
    console.log(`[adaptive ${algorithm}] C=20, L 10 → 30 ms: limit per second ${slower.perSecond.join(' ')} | after ${SETTLE_SECONDS}s mean ${slower.settledMean}, throughput ${slower.throughput}/s of ${Math.round(20_000 / 30)}/s`);
    expect(slower.settledMin).toBeGreaterThanOrEqual(0.7 * 20);
    expect(slower.settledMax).toBeLessThanOrEqual(1.5 * 20);
  });

  it('control: without re-measurement (probeInterval 0) the limit collapses', async () => {
    const figures = await simulate(algorithm, phases, { probeInterval: 0 });
    const slower = figures[1]!;
    console.log(`[adaptive ${algorithm}] control, probeInterval 0, L 10 → 30 ms: limit per second ${slower.perSecond.join(' ')}`);
    expect(slower.settledMax).toBeLessThan(0.7 * 20);
  });
});
