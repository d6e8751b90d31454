import type { CallContext, Task } from '../../core/context.js';
import type { PolicyDependencies } from '../../core/dependencies.js';
import { httpStatusOf, InvalidOptionError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { isPolicyRejection } from '../../core/rejection.js';
import { rejectUnknownOptions } from '../../core/validate.js';
import { isTimeoutExceededError } from '../timeout/timeout.error.js';
import { createAdaptiveLimit, type AdaptiveLimit, type AdaptiveLimitOptions, type ResolvedAdaptiveLimitOptions } from './adaptive-limit.js';
import type { BulkheadInstance } from './bulkhead.instance.js';
import type { BulkheadOptions } from './bulkhead.options.js';
import { BulkheadPolicy } from './bulkhead.policy.js';

/** Options of a bulkhead whose concurrency limit adapts to the latency it measures. */
export interface AdaptiveBulkheadOptions extends Omit<BulkheadOptions, 'maxConcurrent'> {
  /** How the limit moves, and its bounds; see {@link AdaptiveLimitOptions}. */
  adaptive: AdaptiveLimitOptions;
}

/** Emitted when an adaptive bulkhead changes its limit. */
export interface BulkheadLimitChangeEvent {
  /** The bulkhead's name. */
  bulkhead: string;
  /** The limit before. */
  from: number;
  /** The limit from now on. */
  to: number;
  /** Milliseconds the call whose sample moved the limit took. */
  rttMs: number;
  /** The no-load RTT estimate, in milliseconds. */
  minRttMs: number;
  /** Whether that call counted as a drop (past its deadline, or refused downstream). */
  dropped: boolean;
}

const KNOWN_OPTIONS = ['name', 'maxQueue', 'queueTimeout', 'adaptive'] as const;

/**
 * A {@link BulkheadPolicy} whose concurrency limit finds itself (Netflix concurrency-limits style):
 * each completed call is a sample `(rtt, calls in flight when it started, dropped)` for an
 * {@link AdaptiveLimit}, which grows the limit while the latency stays near the no-load latency
 * and shrinks it when a queue shows downstream. The queue, priorities, timeouts and aborts are
 * the bulkhead's.
 *
 * A call drops when it ran out of time (its context's deadline passed on the policy's clock, or
 * a timeout aborted it with a `TimeoutExceededError`), or when it failed with a refusal by one of
 * our policies downstream or an error carrying HTTP status 429, 503 or 504. A call that fails
 * after an abort for another reason (a hedge that lost, a caller that gave up), other failures,
 * and functions that throw synchronously give no sample: they say nothing about load. A call
 * that answers is a sample whatever happened to its context meanwhile.
 *
 * `options.maxConcurrent` reports `adaptive.maxLimit` (the resolved options are fixed);
 * {@link limit} is the limit in use. Lowering the limit never stops running calls: permits above
 * it are dropped as they are released.
 *
 * @example
 * const bulkhead = new AdaptiveBulkheadPolicy({ maxQueue: 50, adaptive: { algorithm: 'gradient', maxLimit: 100 } });
 * bulkhead.onLimitChange(({ from, to }) => log.info(`limit ${from} → ${to}`));
 */
export class AdaptiveBulkheadPolicy extends BulkheadPolicy implements BulkheadInstance {
  /** The resolved adaptive options. */
  readonly adaptive: ResolvedAdaptiveLimitOptions;
  private readonly algorithm: AdaptiveLimit;
  private readonly limitSource = new EventSource<BulkheadLimitChangeEvent>();
  /** Subscribes to changes of the limit. */
  readonly onLimitChange: Event<BulkheadLimitChangeEvent> = this.limitSource.event;

  /**
   * @param options see {@link AdaptiveBulkheadOptions}; `adaptive` is required (`{}` for the defaults).
   * @param dependencies the clock that times calls and queue timeouts.
   * @throws InvalidOptionError when an option is unknown or out of range, or `maxConcurrent` is given.
   */
  constructor(options: AdaptiveBulkheadOptions, dependencies: PolicyDependencies = {}) {
    const algorithm = AdaptiveBulkheadPolicy.validate(options);
    const { adaptive: _adaptive, ...rest } = options;
    super({ ...rest, maxConcurrent: algorithm.options.maxLimit }, dependencies);
    this.algorithm = algorithm;
    this.adaptive = algorithm.options;
    this.permits = algorithm.limit;
  }

  /** The limit in use now: an integer within `[adaptive.minLimit, adaptive.maxLimit]`; 0 once closed. */
  get limit(): number {
    return this.permits;
  }

  private static validate(options: AdaptiveBulkheadOptions): AdaptiveLimit {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('bulkhead', options, 'an options object');
    if ('maxConcurrent' in options) {
      throw new InvalidOptionError('maxConcurrent', (options as { maxConcurrent?: unknown }).maxConcurrent, 'no maxConcurrent with adaptive (the limit finds itself between adaptive.minLimit and adaptive.maxLimit)');
    }
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    if (options.adaptive === undefined) throw new InvalidOptionError('adaptive', undefined, 'an options object (`{}` for the defaults)');
    try {
      return createAdaptiveLimit(options.adaptive);
    } catch (error) {
      if (error instanceof InvalidOptionError) throw error.option === 'adaptive' ? error : error.withContext('', 'adaptive');
      throw error;
    }
  }

  /** Runs `fn` holding a permit, and feeds its latency to the algorithm when it settles. */
  protected override runHolding<T>(fn: Task<T>, context: CallContext): Promise<T> {
    const start = this.clock.now();
    const inflight = this.active;
    let result: PromiseLike<T> | T;
    try {
      result = fn(context);
    } catch (error) {
      this.release();
      return Promise.reject(error);
    }
    return Promise.resolve(result).then<T, never>(
      (value) => {
        // A call that answered is an ordinary sample even if its context was aborted meanwhile
        // (a hedge that lost, a client that left): its latency is real. Too late counts as a drop.
        const now = this.clock.now();
        this.sample(now - start, inflight, expired(context, now));
        this.release();
        return value;
      },
      (error: unknown) => {
        // Only a deadline or an overload says the dependency is too slow. Another abort (a hedge
        // whose sibling answered first, a client that disconnected) says nothing about load, and
        // counting it shrank the limit of a bulkhead behind a hedge to the minimum.
        const now = this.clock.now();
        if (expired(context, now) || isOverload(error)) this.sample(now - start, inflight, true);
        this.release();
        throw error;
      },
    );
  }

  private sample(rttMs: number, inflight: number, dropped: boolean): void {
    if (this.closed) return;
    const from = this.permits;
    const to = this.algorithm.update(rttMs, inflight, dropped);
    if (to === from) return;
    this.permits = to;
    if (this.limitSource.hasListeners) this.limitSource.emit({ bulkhead: this.name, from, to, rttMs, minRttMs: this.algorithm.minRttMs, dropped });
    if (to > from) this.admitWaiting();
  }
}

/** Whether the call ran out of time: its deadline passed on our clock, or a timeout aborted it. */
function expired(context: CallContext, now: number): boolean {
  return context.deadline <= now || (context.aborted && isTimeoutExceededError(context.abortReason));
}

const OVERLOAD_STATUSES = new Set([429, 503, 504]);

function isOverload(error: unknown): boolean {
  if (isPolicyRejection(error)) return true;
  const status = httpStatusOf(error);
  return status !== undefined && OVERLOAD_STATUSES.has(status);
}
