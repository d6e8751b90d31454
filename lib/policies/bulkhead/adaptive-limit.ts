import { InvalidOptionError } from '../../core/errors.js';
import { enumOption, integerOption, numberOption, rejectUnknownOptions } from '../../core/validate.js';

/**
 * How an adaptive bulkhead moves its limit: `'aimd'` (additive increase, multiplicative decrease
 * on a drop) or `'gradient'` (scaled by the ratio of the no-load RTT to the RTT measured).
 */
export type AdaptiveAlgorithm = 'aimd' | 'gradient';

/** Options of an adaptive concurrency limit. */
export interface AdaptiveLimitOptions {
  /**
   * `'gradient'`: each sample moves the limit towards `limit × minRtt / rtt` plus a small queue
   * allowance (√limit / 2), smoothed; it settles just above the downstream's capacity.
   * `'aimd'`: +1 per round trip of calls that use the limit, × `backoffRatio` on a drop (a call
   * that timed out or was refused downstream, or took longer than `tolerance` × the minimum RTT).
   * @default 'gradient'
   */
  algorithm?: AdaptiveAlgorithm;
  /** The limit before the first sample (an integer within `[minLimit, maxLimit]`). @default 20, or `maxLimit` when lower */
  initialLimit?: number;
  /** The lowest limit (an integer ≥ 1). @default 1 */
  minLimit?: number;
  /** The highest limit (an integer ≥ `minLimit`). @default 200 */
  maxLimit?: number;
  /** `'aimd'` only: an RTT above `tolerance` × the minimum RTT counts as a drop (a number > 1). @default 1.5 */
  tolerance?: number;
  /** `'aimd'` only: the factor applied to the limit on a drop (a number in (0, 1)). @default 0.9 */
  backoffRatio?: number;
  /** `'gradient'` only: the weight of each new estimate in the limit (a number in (0, 1]). @default 0.2 */
  smoothing?: number;
  /**
   * Samples between two re-measurements of the minimum RTT: `0` (never), or an integer ≥
   * 5 × `maxLimit`. A re-measurement halves the limit until the calls started before it and one
   * round of new calls have completed (up to 1.5 × `maxLimit` samples, which do not move the
   * limit), then restores it: a queue that never drains would otherwise pass for the no-load
   * latency. The floor keeps re-measurements to under a quarter of the samples, leaving the
   * gradient at least five rounds between two of them; a shorter interval would freeze the limit.
   * @default 1000, or 5 × `maxLimit` when higher
   */
  probeInterval?: number;
}

/** Adaptive limit options after validation, defaults applied. */
export interface ResolvedAdaptiveLimitOptions {
  /** See {@link AdaptiveLimitOptions.algorithm}. */
  readonly algorithm: AdaptiveAlgorithm;
  /** See {@link AdaptiveLimitOptions.initialLimit}. */
  readonly initialLimit: number;
  /** See {@link AdaptiveLimitOptions.minLimit}. */
  readonly minLimit: number;
  /** See {@link AdaptiveLimitOptions.maxLimit}. */
  readonly maxLimit: number;
  /** See {@link AdaptiveLimitOptions.tolerance}. */
  readonly tolerance: number;
  /** See {@link AdaptiveLimitOptions.backoffRatio}. */
  readonly backoffRatio: number;
  /** See {@link AdaptiveLimitOptions.smoothing}. */
  readonly smoothing: number;
  /** See {@link AdaptiveLimitOptions.probeInterval}. */
  readonly probeInterval: number;
}

const KNOWN_OPTIONS = ['algorithm', 'initialLimit', 'minLimit', 'maxLimit', 'tolerance', 'backoffRatio', 'smoothing', 'probeInterval'] as const;
const ALGORITHMS: readonly AdaptiveAlgorithm[] = ['aimd', 'gradient'];
/**
 * The shortest `probeInterval`, per permit of `maxLimit`. A re-measurement lasts up to 1.5 ×
 * the limit in samples that do not move it; every sample between two of them would start the
 * next one with an interval of 1, freezing the limit.
 */
const PROBE_INTERVAL_PER_LIMIT = 5;

/**
 * Validates adaptive limit options and applies the defaults.
 *
 * @throws InvalidOptionError when an option is unknown or out of range (the option named without a scope).
 */
export function resolveAdaptiveLimitOptions(options: AdaptiveLimitOptions = {}): ResolvedAdaptiveLimitOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('adaptive', options, 'an options object');
  rejectUnknownOptions(options, KNOWN_OPTIONS, '');
  const algorithm = enumOption(options.algorithm, 'algorithm', 'gradient', ALGORITHMS);
  const minLimit = integerOption(options.minLimit, 'minLimit', 1, 1);
  const maxLimit = integerOption(options.maxLimit, 'maxLimit', Math.max(200, minLimit), minLimit);
  const initialLimit = integerOption(options.initialLimit, 'initialLimit', Math.min(maxLimit, Math.max(minLimit, 20)), minLimit, maxLimit);
  const tolerance = numberOption(options.tolerance, 'tolerance', 1.5, 1, Infinity, { exclusiveMin: true });
  const backoffRatio = numberOption(options.backoffRatio, 'backoffRatio', 0.9, 0, 1, { exclusiveMin: true });
  if (backoffRatio === 1) throw new InvalidOptionError('backoffRatio', backoffRatio, 'a number > 0 and < 1');
  const smoothing = numberOption(options.smoothing, 'smoothing', 0.2, 0, 1, { exclusiveMin: true });
  const minProbeInterval = PROBE_INTERVAL_PER_LIMIT * maxLimit;
  const probeInterval = integerOption(options.probeInterval, 'probeInterval', Math.max(1000, minProbeInterval), 0);
  if (probeInterval !== 0 && probeInterval < minProbeInterval) {
    throw new InvalidOptionError('probeInterval', probeInterval, `0 (never), or an integer ≥ ${minProbeInterval} (${PROBE_INTERVAL_PER_LIMIT} × maxLimit)`);
  }
  return Object.freeze({ algorithm, initialLimit, minLimit, maxLimit, tolerance, backoffRatio, smoothing, probeInterval });
}

/**
 * A concurrency limit fed with one sample per completed call; framework-free and clock-free
 * (the caller measures the RTT). Subclasses say how a sample moves the estimate; this class
 * tracks the minimum RTT, re-measures it every `probeInterval` samples, and clamps the limit.
 */
export abstract class AdaptiveLimit {
  /** The resolved options. */
  readonly options: ResolvedAdaptiveLimitOptions;
  /** The unrounded limit: increases of a fraction of a permit add up. */
  protected estimate: number;
  /** The lowest RTT seen since the last re-measurement: the no-load latency. */
  protected minRtt = Infinity;
  private current: number;
  private untilProbe: number;
  private probeLeft = 0;
  private probeMin = Infinity;
  private savedEstimate = 0;

  /** @param options see {@link AdaptiveLimitOptions}. @throws InvalidOptionError when an option is invalid. */
  constructor(options: AdaptiveLimitOptions = {}) {
    this.options = resolveAdaptiveLimitOptions(options);
    this.estimate = this.current = this.options.initialLimit;
    this.untilProbe = this.options.probeInterval;
  }

  /** The limit in use: an integer within `[minLimit, maxLimit]`. */
  get limit(): number {
    return this.current;
  }

  /** The no-load RTT estimate in milliseconds; `Infinity` before the first sample. */
  get minRttMs(): number {
    return this.minRtt;
  }

  /** Whether the minimum RTT is being re-measured (the limit is halved meanwhile). */
  get probing(): boolean {
    return this.probeLeft > 0;
  }

  /**
   * Feeds one completed call and returns the limit to use from now on.
   *
   * @param rttMs how long the call took.
   * @param inflight calls running when it started, itself included.
   * @param didDrop whether it timed out or was refused downstream (a sign of overload).
   */
  update(rttMs: number, inflight: number, didDrop: boolean): number {
    if (this.probeLeft > 0) {
      if (!didDrop && rttMs < this.probeMin) this.probeMin = rttMs;
      if (--this.probeLeft === 0) {
        if (this.probeMin !== Infinity) this.minRtt = this.probeMin;
        this.setEstimate(this.savedEstimate);
      }
      return this.current;
    }
    if (!didDrop && rttMs < this.minRtt) this.minRtt = rttMs;
    if (this.untilProbe > 0 && --this.untilProbe === 0) {
      this.untilProbe = this.options.probeInterval;
      this.savedEstimate = this.estimate;
      const before = this.current;
      this.setEstimate(this.estimate / 2);
      // The calls admitted before the halving finish with a queue behind them; one more round
      // of calls admitted under the halved limit shows the latency without it.
      this.probeLeft = before + this.current;
      this.probeMin = Infinity;
      return this.current;
    }
    this.setEstimate(this.next(rttMs, inflight, didDrop));
    return this.current;
  }

  /** The new unclamped estimate after a sample; `this.minRtt` already includes it. */
  protected abstract next(rttMs: number, inflight: number, didDrop: boolean): number;

  private setEstimate(value: number): void {
    const { minLimit, maxLimit } = this.options;
    this.estimate = value < minLimit ? minLimit : value > maxLimit ? maxLimit : value;
    this.current = Math.floor(this.estimate);
  }
}

/**
 * Additive increase, multiplicative decrease: +1 per round trip (1 / limit per sample) while the
 * calls use at least half the limit, × `backoffRatio` on a drop. After a decrease the limit holds
 * for a round trip (as many samples as the limit was): the calls already in flight then carry no
 * news about the new limit.
 */
export class AimdLimit extends AdaptiveLimit {
  private sinceDecrease = Infinity;
  private decreaseWindow = 0;

  /** Adds 1 / limit, or multiplies by `backoffRatio` on a drop; see the class. */
  protected next(rttMs: number, inflight: number, didDrop: boolean): number {
    const { tolerance, backoffRatio } = this.options;
    // The calls in flight at a decrease started under the old limit: until they are done, their
    // samples say nothing about the new one, either way.
    if (++this.sinceDecrease < this.decreaseWindow) return this.estimate;
    if (didDrop || rttMs > tolerance * this.minRtt) {
      this.sinceDecrease = 0;
      this.decreaseWindow = Math.ceil(this.estimate);
      return this.estimate * backoffRatio;
    }
    return inflight * 2 >= this.estimate ? this.estimate + 1 / this.estimate : this.estimate;
  }
}

/**
 * Gradient: once per round trip of calls (as many samples as the limit), the limit moves towards
 * `limit × minRtt / averageRtt + √limit / 2` (the gradient clamped to [0.5, 1], 0.5 when a call
 * of the round dropped), weighing `smoothing`. Under a downstream of capacity C the average RTT
 * grows as limit / C beyond C, so the limit settles near C + √C / 2. A round whose calls used
 * less than half the limit leaves it as it is (no growth the traffic does not test).
 */
export class GradientLimit extends AdaptiveLimit {
  // One round's samples: a single call that waited behind a queue says less than their average.
  private roundRtt = 0;
  private roundSamples = 0;
  private roundInflight = 0;
  private roundDropped = false;

  /** Adds the sample to the round; at the round's end, moves the limit by the round's gradient. */
  protected next(rttMs: number, inflight: number, didDrop: boolean): number {
    const estimate = this.estimate;
    this.roundRtt += rttMs;
    if (inflight > this.roundInflight) this.roundInflight = inflight;
    if (didDrop) this.roundDropped = true;
    if (++this.roundSamples < estimate) return estimate;
    const averageRtt = this.roundRtt / this.roundSamples;
    const dropped = this.roundDropped;
    const appLimited = this.roundInflight * 2 < estimate;
    this.roundRtt = this.roundSamples = this.roundInflight = 0;
    this.roundDropped = false;
    if (!dropped && appLimited) return estimate;
    const ratio = dropped ? 0.5 : averageRtt <= this.minRtt ? 1 : this.minRtt / averageRtt;
    const gradient = ratio < 0.5 ? 0.5 : ratio;
    const target = estimate * gradient + Math.sqrt(estimate) / 2;
    const { smoothing } = this.options;
    return estimate * (1 - smoothing) + target * smoothing;
  }
}

/**
 * Builds the limit `options.algorithm` names.
 *
 * @throws InvalidOptionError when an option is invalid.
 */
export function createAdaptiveLimit(options: AdaptiveLimitOptions = {}): AdaptiveLimit {
  const resolved = resolveAdaptiveLimitOptions(options);
  return resolved.algorithm === 'aimd' ? new AimdLimit(resolved) : new GradientLimit(resolved);
}
