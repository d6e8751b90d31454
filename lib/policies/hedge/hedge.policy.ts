import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { abortReasonOf, CallContext, leaveContext, NO_CONTEXT, runInContext, type Task } from '../../core/context.js';
import type { PolicyDependencies } from '../../core/dependencies.js';
import { toMilliseconds } from '../../core/duration.js';
import { InvalidOptionError, OperationAbortedError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { executeWith, type Policy } from '../../core/policy.js';
import { integerOption, numberOption, rejectUnknownOptions } from '../../core/validate.js';
import { resolveRetryBudget, type RetryBudgetInstance } from '../retry/retry-budget.js';
import type { HedgeOptions } from './hedge.options.js';

const KNOWN_OPTIONS: readonly string[] = ['delay', 'maxHedges', 'budget'];
const KNOWN_PERCENTILE_OPTIONS: readonly string[] = ['percentile', 'minDelay', 'maxDelay', 'sampleSize'];
/** Successes needed before the percentile is trusted (fewer when `sampleSize` is smaller). */
const MIN_SAMPLES = 10;

/** The options of a {@link HedgePolicy} after validation, durations in milliseconds. */
export interface ResolvedHedgeOptions {
  /** The fixed delay before each hedge; `undefined` when the delay follows a percentile. */
  readonly delay: number | undefined;
  /** The latency percentile the delay follows; `undefined` with a fixed delay. */
  readonly percentile: number | undefined;
  /** The shortest percentile delay. */
  readonly minDelay: number;
  /** The longest percentile delay, and the delay used until enough successes were seen. */
  readonly maxDelay: number;
  /** Successful attempts the percentile is taken over. */
  readonly sampleSize: number;
  /** Extra attempts a call may start. */
  readonly maxHedges: number;
}

/** Emitted when a call starts a hedge: another attempt, because none answered in time. */
export interface HedgeEvent {
  /** The attempt starting, 1-based: `2` is the first hedge. */
  readonly attempt: number;
  /** How long the call waited for an answer before starting it, in ms. */
  readonly delayMs: number;
}

/** A hedge policy's counters since it was built. */
export interface HedgeStats {
  /** Calls run. */
  calls: number;
  /** Hedges started. */
  hedges: number;
  /** Calls answered by a hedge rather than by their first attempt. */
  hedgeWins: number;
  /** Hedges not started because the budget refused them. */
  refused: number;
  /** The delay the next call waits before its first hedge, in ms. */
  delayMs: number;
}

/**
 * Hedged requests for idempotent work: when an attempt has not answered within a delay (fixed, or a
 * latency percentile of recent successes), another one starts, up to `maxHedges`; the first success
 * answers the call and the others are aborted. Each attempt runs in a {@link CallContext} of its own,
 * derived from the call's, so `getAbortSignal()` and the task's argument give each attempt its own
 * signal, which fires when it loses (or when the call is aborted). A budget bounds the extra load.
 *
 * When every attempt started has failed the call rejects with the last error to fail, without
 * waiting for hedges that have not started (retrying failures is `@Retry`'s job). No timer is left
 * when a call settles.
 *
 * @example
 * const hedge = new HedgePolicy({ delay: { percentile: 95 }, maxHedges: 1, budget: { ratio: 0.05 } });
 * const page = await hedge.execute(({ signal }) => fetch(url, { signal }));
 */
export class HedgePolicy implements Policy {
  /** The resolved options. */
  readonly options: ResolvedHedgeOptions;
  /** The budget every hedge withdraws from; `undefined` without one. */
  readonly budget: RetryBudgetInstance | undefined;
  /** Fires when a call starts a hedge, just before its attempt runs. */
  readonly onHedge: Event<HedgeEvent>;

  private readonly runtime: Runtime;

  /**
   * @param options see {@link HedgeOptions}; every field is optional.
   * @param dependencies the clock for the hedging delay and the latencies.
   * @throws InvalidOptionError when an option is unknown or out of range.
   */
  constructor(options: HedgeOptions = {}, dependencies: PolicyDependencies = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object of hedge options');
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    const maxHedges = integerOption(options.maxHedges, 'maxHedges', 1, 1, 100);
    const delay = options.delay ?? { percentile: 95 };
    let latencies: LatencyTracker | undefined;
    if (typeof delay === 'object' && delay !== null) {
      rejectUnknownOptions(delay, KNOWN_PERCENTILE_OPTIONS, 'delay');
      if (delay.percentile === undefined) throw new InvalidOptionError('delay.percentile', undefined, 'a number above 0 and at most 100');
      const percentile = numberOption(delay.percentile, 'delay.percentile', 95, 0, 100, { exclusiveMin: true });
      const minDelay = toMilliseconds(delay.minDelay ?? 0, 'delay.minDelay', { timer: true });
      const maxDelay = toMilliseconds(delay.maxDelay ?? 1000, 'delay.maxDelay', { timer: true });
      if (maxDelay < minDelay) throw new InvalidOptionError('delay.maxDelay', delay.maxDelay, `a duration ≥ delay.minDelay (${minDelay} ms)`);
      const sampleSize = integerOption(delay.sampleSize, 'delay.sampleSize', 100, 1, 100_000);
      this.options = Object.freeze({ delay: undefined, percentile, minDelay, maxDelay, sampleSize, maxHedges });
      latencies = new LatencyTracker(percentile, minDelay, maxDelay, sampleSize);
    } else {
      const fixed = toMilliseconds(delay, 'delay', { timer: true });
      this.options = Object.freeze({ delay: fixed, percentile: undefined, minDelay: fixed, maxDelay: fixed, sampleSize: 0, maxHedges });
    }
    const clock = dependencies.clock ?? systemClock;
    this.budget = resolveRetryBudget(options.budget, { clock });
    const events = new EventSource<HedgeEvent>();
    this.onHedge = events.event;
    this.runtime = { clock, maxHedges, fixedDelay: this.options.delay ?? 0, latencies, budget: this.budget, events, counters: { calls: 0, hedges: 0, hedgeWins: 0, refused: 0 } };
  }

  /** Runs `fn` with hedging; see {@link Policy.execute}. */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((ctx) => this.run(fn, ctx), context);
  }

  /**
   * Runs `fn`, starting another attempt each time none answered within the delay.
   *
   * @returns the first attempt to succeed; the last error when every attempt started failed; the
   *   abort reason as soon as the call is aborted.
   */
  run<T>(fn: Task<T>, context: CallContext | undefined): Promise<T> {
    const parent = context ?? NO_CONTEXT;
    if (parent.aborted) return Promise.reject(abortReasonOf(parent.abortReason));
    const runtime = this.runtime;
    runtime.counters.calls++;
    if (runtime.budget !== undefined) recordCall(runtime.budget);
    return new Promise<T>((resolve, reject) => {
      new HedgedCall<T>(runtime, fn, parent, resolve, reject).begin();
    });
  }

  /** Counters since the policy was built, and the current hedging delay. */
  stats(): HedgeStats {
    return { ...this.runtime.counters, delayMs: delayOf(this.runtime) };
  }
}

/** What the calls of one policy share. */
interface Runtime {
  readonly clock: Clock;
  readonly maxHedges: number;
  readonly fixedDelay: number;
  readonly latencies: LatencyTracker | undefined;
  readonly budget: RetryBudgetInstance | undefined;
  readonly events: EventSource<HedgeEvent>;
  readonly counters: { calls: number; hedges: number; hedgeWins: number; refused: number };
}

/** Deposits for a call; a budget that throws is ignored: its bookkeeping must not fail the call. */
function recordCall(budget: RetryBudgetInstance): void {
  try {
    budget.recordCall();
  } catch {
    // Nothing to do: the budget then refuses on its own deposits.
  }
}

function delayOf(runtime: Runtime): number {
  return runtime.latencies === undefined ? runtime.fixedDelay : runtime.latencies.delay();
}

/** The latencies of the latest successful attempts and the percentile over them, recomputed every tenth of the sample. */
class LatencyTracker {
  private readonly samples: Float64Array;
  private count = 0;
  private next = 0;
  private sinceCompute = 0;
  private readonly recomputeEvery: number;
  private readonly minSamples: number;
  private cached: number;

  constructor(
    private readonly percentile: number,
    private readonly minDelay: number,
    private readonly maxDelay: number,
    sampleSize: number,
  ) {
    this.samples = new Float64Array(sampleSize);
    this.recomputeEvery = Math.max(1, Math.floor(sampleSize / 10));
    this.minSamples = Math.min(MIN_SAMPLES, sampleSize);
    this.cached = maxDelay;
  }

  record(ms: number): void {
    const samples = this.samples;
    samples[this.next] = ms;
    this.next = this.next + 1 === samples.length ? 0 : this.next + 1;
    if (this.count < samples.length) this.count++;
    // Sorting the sample on every call would cost more than the call: the delay moves in steps.
    if (this.count >= this.minSamples && ++this.sinceCompute >= this.recomputeEvery) {
      this.sinceCompute = 0;
      const sorted = this.samples.subarray(0, this.count).toSorted();
      const rank = Math.max(1, Math.ceil((this.percentile / 100) * sorted.length));
      const value = sorted[rank - 1]!;
      this.cached = value < this.minDelay ? this.minDelay : value > this.maxDelay ? this.maxDelay : value;
    }
  }

  delay(): number {
    return this.cached;
  }
}

/** One hedged call: its attempts, its hedge timer and how its caller is settled. */
class HedgedCall<T> {
  private readonly live: CallContext[] = [];
  private started = 0;
  /** When the first attempt started: the call's latency is measured from it. */
  private firstStartedAt = 0;
  private settled = false;
  private timer: TimerHandle | undefined = undefined;
  private removeAbortListener: (() => void) | undefined = undefined;
  private readonly delayMs: number;

  constructor(
    private readonly policy: Runtime,
    private readonly fn: Task<T>,
    private readonly parent: CallContext,
    private readonly resolve: (value: T) => void,
    private readonly reject: (reason: unknown) => void,
  ) {
    this.delayMs = delayOf(policy);
  }

  begin(): void {
    if (this.parent !== NO_CONTEXT) {
      this.removeAbortListener = this.parent.onAbort((reason) => {
        if (this.settled) return;
        // The attempts are the parent's children: they are aborted already.
        this.finish();
        this.reject(abortReasonOf(reason));
      });
    }
    this.firstStartedAt = this.policy.clock.now();
    this.startAttempt();
  }

  private startAttempt(): void {
    const attempt = new CallContext(this.parent);
    const number = ++this.started;
    this.live.push(attempt);
    let result: PromiseLike<T> | T;
    try {
      result = runInContext(attempt, this.fn);
    } catch (error) {
      // This settles the call only when no other attempt runs; otherwise the next hedge is still
      // due one delay from now, as if this attempt had failed asynchronously.
      this.failed(attempt, error);
      this.scheduleHedge();
      return;
    }
    Promise.resolve(result).then(
      (value) => {
        leaveContext();
        this.succeeded(attempt, value, number);
      },
      (error: unknown) => {
        leaveContext();
        this.failed(attempt, error);
      },
    );
    this.scheduleHedge();
  }

  private scheduleHedge(): void {
    if (!this.settled && this.started <= this.policy.maxHedges) {
      this.timer = this.policy.clock.setTimeout(this.hedge, this.delayMs);
    }
  }

  private readonly hedge = (): void => {
    this.timer = undefined;
    if (this.settled) return;
    const budget = this.policy.budget;
    if (budget === undefined) return this.startHedge();
    let granted: boolean | PromiseLike<boolean>;
    try {
      granted = budget.tryAcquire();
    } catch {
      // A budget that cannot answer refuses: this runs in a timer, where a throw would be uncaught.
      granted = false;
    }
    if (granted === true) return this.startHedge();
    if (granted === false) {
      this.policy.counters.refused++;
      return;
    }
    void Promise.resolve(granted).then(
      (ok) => {
        if (ok) this.startHedge();
        else this.policy.counters.refused++;
      },
      () => {
        this.policy.counters.refused++;
      },
    );
  };

  private startHedge(): void {
    if (this.settled) return;
    this.policy.counters.hedges++;
    const events = this.policy.events;
    if (events.hasListeners) events.emit({ attempt: this.started + 1, delayMs: this.delayMs });
    // A listener may have aborted the call.
    if (this.settled) return;
    this.startAttempt();
  }

  private succeeded(attempt: CallContext, value: T, number: number): void {
    this.remove(attempt);
    if (this.settled) return;
    // The call's latency, not the winner's: when a hedge wins, it is a lower bound on the first
    // attempt's (which started the call and had not answered). Recording the winner's alone would
    // replace the slow samples by fast ones and ratchet the delay below the percentile; this way a
    // call whose first attempt outlived the delay always records more than the delay, so the
    // delay settles where (100 − percentile) % of first attempts outlive it.
    this.policy.latencies?.record(this.policy.clock.now() - this.firstStartedAt);
    if (number > 1) this.policy.counters.hedgeWins++;
    this.finish();
    const losers = this.live.splice(0);
    if (losers.length > 0) {
      const reason = new OperationAbortedError('hedge: another attempt answered first');
      for (const loser of losers) loser.abort(reason);
    }
    this.resolve(value);
  }

  private failed(attempt: CallContext, error: unknown): void {
    this.remove(attempt);
    if (this.settled || this.live.length > 0) return;
    this.finish();
    this.reject(error);
  }

  private remove(attempt: CallContext): void {
    const index = this.live.indexOf(attempt);
    if (index >= 0) this.live.splice(index, 1);
    attempt.dispose();
  }

  private finish(): void {
    this.settled = true;
    if (this.timer !== undefined) {
      this.policy.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    const remove = this.removeAbortListener;
    if (remove !== undefined) {
      this.removeAbortListener = undefined;
      remove();
    }
  }
}
