import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { NO_CONTEXT, type CallContext, type Task } from '../../core/context.js';
import type { PolicyDependencies } from '../../core/dependencies.js';
import { toMilliseconds } from '../../core/duration.js';
import { InvalidOptionError, OperationAbortedError, retryAfterOf } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { compileMatchers } from '../../core/matchers.js';
import { executeWith, invoke, type Policy } from '../../core/policy.js';
import { isPolicyRejection } from '../../core/rejection.js';
import { enumOption, integerOption, numberOption, rejectUnknownOptions } from '../../core/validate.js';
import { nextDelay, type BackoffSettings } from './backoff.js';
import { resolveRetryBudget, type RetryBudgetInstance } from './retry-budget.js';
import type { BackoffKind, JitterKind, RetryOptions } from './retry.options.js';

const KNOWN_OPTIONS: readonly string[] = [
  'maxAttempts',
  'backoff',
  'delay',
  'multiplier',
  'maxDelay',
  'jitter',
  'retryOn',
  'abortOn',
  'honorRetryAfter',
  'retryRejections',
  'budget',
];
const BACKOFF_KINDS: readonly BackoffKind[] = ['constant', 'linear', 'exponential'];
const JITTER_KINDS: readonly JitterKind[] = ['none', 'full', 'equal', 'decorrelated'];

/** The options of a {@link RetryPolicy} after validation: defaults applied, durations in ms, matchers compiled. */
export interface ResolvedRetryOptions extends BackoffSettings {
  /** Attempts in all, the first one included. */
  readonly maxAttempts: number;
  /** Only errors it accepts are retried; `undefined`: every error. */
  readonly retryOn: ((error: unknown) => boolean) | undefined;
  /** Errors it accepts are never retried; `undefined`: none. */
  readonly abortOn: ((error: unknown) => boolean) | undefined;
  /** Whether a delay carried by the error is honoured (up to `maxDelay`). */
  readonly honorRetryAfter: boolean;
  /** Whether our own refusals (open circuit, rate limit, full bulkhead) are retried. */
  readonly retryRejections: boolean;
}

/** Emitted after a failed attempt, before the policy sleeps and tries again. */
export interface RetryEvent {
  /** The attempt that failed, 1-based. */
  readonly attempt: number;
  /** How long the policy sleeps before the next attempt, in ms. */
  readonly delayMs: number;
  /** The error of the attempt that failed. */
  readonly error: unknown;
}

/**
 * Why a retry stopped: attempts used up; an error it must not retry (`abortOn`, `retryOn`, our own
 * refusals); the call was aborted (by its caller or an enclosing deadline); the next delay
 * would end past the call's deadline; or the retry budget refused the retry.
 */
export type RetryGiveUpReason = 'exhausted' | 'not-retryable' | 'aborted' | 'deadline' | 'budget';

/** Emitted once when a call fails for good. */
export interface RetryGiveUpEvent {
  /** Attempts made, the first one included. */
  readonly attempts: number;
  /** The error the call rejects with: the last attempt's error, or the abort reason when aborted during a backoff sleep. */
  readonly error: unknown;
  /** Why the policy stopped. */
  readonly reason: RetryGiveUpReason;
}

/**
 * Runs a task again after it fails, with backoff and jitter between attempts, until it succeeds,
 * the attempts are used up, the error is not retryable, or the call is aborted. When it gives up it
 * re-throws the task's last error unchanged, so its HTTP status still reaches the client.
 *
 * @example
 * const retry = new RetryPolicy({ maxAttempts: 4, delay: '200ms', retryOn: (e) => httpStatusOf(e) !== 400 });
 * const quote = await retry.execute(({ signal }) => fetch(url, { signal }));
 */
export class RetryPolicy implements Policy {
  /** The resolved options. */
  readonly options: ResolvedRetryOptions;
  /** The budget every call deposits into and every retry withdraws from; `undefined` without one. */
  readonly budget: RetryBudgetInstance | undefined;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly retrySource = new EventSource<RetryEvent>();
  private readonly giveUpSource = new EventSource<RetryGiveUpEvent>();

  /** Fires after a failed attempt, before the backoff sleep starts (its timer is already scheduled). */
  readonly onRetry: Event<RetryEvent> = this.retrySource.event;
  /** Fires once when a call fails for good, before the error reaches the caller. */
  readonly onGiveUp: Event<RetryGiveUpEvent> = this.giveUpSource.event;

  /**
   * @throws InvalidOptionError when an option is unknown or out of range (e.g. `maxAttempts: 0`,
   *   `maxDelay` below `delay`).
   */
  constructor(options: RetryOptions = {}, dependencies: PolicyDependencies = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOptionError('options', options, 'an object of retry options');
    }
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    const delay = toMilliseconds(options.delay ?? 100, 'delay', { timer: true });
    const maxDelay = toMilliseconds(options.maxDelay ?? 30_000, 'maxDelay', { timer: true });
    if (maxDelay < delay) {
      throw new InvalidOptionError('maxDelay', options.maxDelay ?? maxDelay, `a duration ≥ delay (${delay} ms)`);
    }
    this.options = {
      maxAttempts: integerOption(options.maxAttempts, 'maxAttempts', 3, 1),
      backoff: enumOption(options.backoff, 'backoff', 'exponential', BACKOFF_KINDS),
      delay,
      multiplier: numberOption(options.multiplier, 'multiplier', 2, 1),
      maxDelay,
      jitter: enumOption(options.jitter, 'jitter', 'full', JITTER_KINDS),
      retryOn: compileMatchers(options.retryOn, 'retryOn'),
      abortOn: compileMatchers(options.abortOn, 'abortOn'),
      honorRetryAfter: booleanOption(options.honorRetryAfter, 'honorRetryAfter', true),
      retryRejections: booleanOption(options.retryRejections, 'retryRejections', false),
    };
    this.clock = dependencies.clock ?? systemClock;
    this.random = dependencies.random ?? Math.random;
    this.budget = resolveRetryBudget(options.budget, { clock: this.clock });
  }

  /** Runs `fn`, retrying it on failure; see {@link Policy.execute}. */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((ctx) => this.run(fn, ctx), context);
  }

  /** Runs `fn` inside an already resolved context, each attempt with that same context. */
  run<T>(fn: Task<T>, context: CallContext | undefined): Promise<T> {
    const ctx = context ?? NO_CONTEXT;
    if (ctx.aborted) return Promise.reject(abortReasonOf(ctx));
    if (this.budget !== undefined) recordCall(this.budget);
    // The success path pays for one closure and one derived promise; everything else lives on the error path.
    return invoke(fn, ctx).then(undefined, (error: unknown) => this.retry(fn, ctx, error));
  }

  private async retry<T>(fn: Task<T>, context: CallContext, firstError: unknown): Promise<T> {
    const options = this.options;
    let error = firstError;
    let previous = options.delay;
    for (let attempt = 1; ; attempt++) {
      const stop = this.stopReason(error, attempt, context);
      if (stop !== undefined) throw this.giveUp(attempt, error, stop);

      let delay = nextDelay(options, attempt, previous, this.random);
      previous = delay;
      if (options.honorRetryAfter) {
        const requested = retryAfterOf(error, Date.now());
        if (requested !== undefined && requested > delay) delay = requested < options.maxDelay ? requested : options.maxDelay;
      }
      // Waking up at (or after) the deadline leaves the next attempt no time: give up now.
      if (delay >= context.remaining(this.clock.now())) throw this.giveUp(attempt, error, 'deadline');
      // Asked after every other check, so a retry those stop spends no token. The token is taken
      // before the backoff sleep (the retry is announced with it): an abort during the sleep, or a
      // deadline passed while an asynchronous budget answered, wastes that token. It errs on the
      // side of fewer retries; the bound on attempts holds either way.
      const budget = this.budget;
      if (budget !== undefined) {
        const answer = acquire(budget);
        if (answer === false) throw this.giveUp(attempt, error, 'budget');
        if (answer !== true) {
          if (!(await answer)) throw this.giveUp(attempt, error, 'budget');
          // Time passed while the budget answered: the checks made before it are stale.
          if (context.aborted) throw this.giveUp(attempt, abortReasonOf(context), 'aborted');
          if (delay >= context.remaining(this.clock.now())) throw this.giveUp(attempt, error, 'deadline');
        }
      }

      // The timer is scheduled before the event, so a listener may drive a fake clock synchronously.
      const sleeping = this.sleep(delay, context);
      if (this.retrySource.hasListeners) this.retrySource.emit({ attempt, delayMs: delay, error });
      try {
        await sleeping;
      } catch (reason) {
        throw this.giveUp(attempt, reason, 'aborted');
      }
      // An abort landing between the timer firing and this continuation must not start an attempt.
      if (context.aborted) throw this.giveUp(attempt, abortReasonOf(context), 'aborted');

      try {
        return await invoke(fn, context);
      } catch (next) {
        error = next;
      }
    }
  }

  private stopReason(error: unknown, attempt: number, context: CallContext): RetryGiveUpReason | undefined {
    if (context.aborted) return 'aborted';
    const { abortOn, retryOn } = this.options;
    if (abortOn !== undefined && abortOn(error)) return 'not-retryable';
    if (!this.options.retryRejections && isPolicyRejection(error)) return 'not-retryable';
    if (retryOn !== undefined && !retryOn(error)) return 'not-retryable';
    if (attempt >= this.options.maxAttempts) return 'exhausted';
    return undefined;
  }

  private giveUp(attempts: number, error: unknown, reason: RetryGiveUpReason): unknown {
    if (this.giveUpSource.hasListeners) this.giveUpSource.emit({ attempts, error, reason });
    return error;
  }

  /** Resolves after `ms`, or rejects with the abort reason as soon as the context aborts; leaves no timer or listener behind. */
  private sleep(ms: number, context: CallContext): Promise<void> {
    if (context.aborted) return Promise.reject(abortReasonOf(context));
    if (ms <= 0) return Promise.resolve();
    const clock = this.clock;
    return new Promise<void>((resolve, reject) => {
      let removeListener: (() => void) | undefined;
      const timer: TimerHandle = clock.setTimeout(() => {
        removeListener?.();
        resolve();
      }, ms);
      // The shared inert context never aborts: no listener to add (or to leak) there.
      if (context !== NO_CONTEXT) {
        removeListener = context.onAbort(() => {
          clock.clearTimeout(timer);
          reject(abortReasonOf(context));
        });
      }
    });
  }
}

function abortReasonOf(context: CallContext): unknown {
  const reason = context.abortReason;
  return reason === undefined ? new OperationAbortedError() : reason;
}

/** Deposits for a call; a budget that throws is ignored: its bookkeeping must not fail the call. */
function recordCall(budget: RetryBudgetInstance): void {
  try {
    budget.recordCall();
  } catch {
    // Nothing to do: the budget then grants on the deposits it has.
  }
}

/**
 * Asks the budget for a token. A budget that cannot answer (it throws, or its promise rejects)
 * refuses: the caller then gets the call's last error, never the budget's.
 */
function acquire(budget: RetryBudgetInstance): boolean | Promise<boolean> {
  let answer: boolean | PromiseLike<boolean>;
  try {
    answer = budget.tryAcquire();
  } catch {
    return false;
  }
  if (answer === true || answer === false) return answer;
  return Promise.resolve(answer).then(
    (granted) => Boolean(granted),
    () => false,
  );
}

function booleanOption(value: unknown, option: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidOptionError(option, value, 'true or false');
  return value;
}
