import { systemClock, type Clock } from '../../core/clock.js';
import { abortReasonOf, CallContext, leaveContext, NO_CONTEXT, runInContext, type Task } from '../../core/context.js';
import { toMilliseconds } from '../../core/duration.js';
import { InvalidOptionError, OperationAbortedError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { executeWith, invoke, type Policy } from '../../core/policy.js';
import { rejectUnknownOptions } from '../../core/validate.js';
import { ChaosInjectedError, ChaosNotAllowedError } from './chaos.error.js';
import type { ChaosDependencies, ChaosFault, ChaosOptions, ChaosStats } from './chaos.options.js';

/** Emitted when a chaos policy injects a fault into a call. */
export interface ChaosInjectEvent {
  /** The chaos policy's name. */
  policy: string;
  /** The fault injected. */
  fault: ChaosFault;
  /** With `'latency'`: how long the call is delayed, in milliseconds. */
  delayMs?: number;
}

const KNOWN_OPTIONS = ['name', 'enabled', 'latency', 'error', 'abort'] as const;
const NO_NAME = ['enabled', 'latency', 'error', 'abort'] as const;
// Rates are read as given: 0.7 + 0.3 must pass although floating point may land a hair above 1.
const RATE_SUM_SLACK = 1e-9;

/** The faults after validation: durations in milliseconds, rates checked. */
interface Faults {
  readonly latencyRate: number;
  readonly minDelay: number;
  readonly maxDelay: number;
  /** One draw decides between abort (below `abortRate`), error (from `errorFrom`) and neither. */
  readonly abortRate: number;
  /** `1 - error.rate`: the errors take the top of [0, 1), so the two shares never add in floating point. */
  readonly errorFrom: number;
  readonly terminal: boolean;
  readonly error: unknown;
  readonly errorIsFactory: boolean;
}

/** What one call was dealt, drawn when it enters so that draws do not depend on timing. */
const PASS = 0;
const ABORT = 1;
const FAIL = 2;

/**
 * Injects faults into calls at configured rates so a team can rehearse a failing dependency:
 * latency (waits on the clock before the method runs, ending early when the call is aborted),
 * errors (the method does not run; the caller gets the configured error, a
 * {@link ChaosInjectedError} by default) and aborts (the method starts, then its context is
 * aborted at the end of the turn: its `AbortSignal` fires and the caller gets an
 * `OperationAbortedError` once the method settles). Latency is drawn on its own and comes first;
 * a call then gets at most one of an abort and an error.
 *
 * It is off in production (`NODE_ENV=production`) unless allowed explicitly, and can be switched
 * and reconfigured at run time. Disabled, a call costs one field read. Draws come from
 * `dependencies.random`, so a seeded source makes a run reproducible.
 *
 * @example
 * const chaos = new ChaosPolicy({ latency: { rate: 0.2, delay: ['100ms', '2s'] }, error: { rate: 0.05 } });
 * const quote = await chaos.execute(({ signal }) => fetch(url, { signal }));
 */
export class ChaosPolicy implements Policy {
  /** The policy's name, used in events, errors and the registry. */
  readonly name: string;

  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly locked: boolean;
  private on: boolean;
  private faults: Faults;

  private callCount = 0;
  private latencyCount = 0;
  private errorCount = 0;
  private abortCount = 0;

  private readonly injectSource = new EventSource<ChaosInjectEvent>();
  /** Subscribes to injected faults; a latency event comes before the wait starts (its timer is already set). */
  readonly onInject: Event<ChaosInjectEvent> = this.injectSource.event;

  /**
   * @param options see {@link ChaosOptions}, plus `name`. @default name `'chaos'`
   * @param dependencies `clock` for latency, `random` for the draws, and whether this is
   *   production and fault injection is allowed there.
   * @throws InvalidOptionError when an option is unknown or out of range.
   */
  constructor(options: ChaosOptions & { name?: string } = {}, dependencies: ChaosDependencies = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('chaos', options, 'an options object');
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    const name = options.name ?? 'chaos';
    if (typeof name !== 'string' || name === '') throw new InvalidOptionError('name', name, 'a non-empty string');
    this.name = name;
    this.faults = resolveFaults(options);
    const enabled = booleanOption(options.enabled, 'enabled', true);
    const production = dependencies.production ?? process.env.NODE_ENV === 'production';
    this.locked = production && dependencies.allowInProduction !== true;
    this.on = enabled && !this.locked;
    this.clock = dependencies.clock ?? systemClock;
    this.random = dependencies.random ?? Math.random;
  }

  /** Whether faults are being injected. */
  get enabled(): boolean {
    return this.on;
  }

  /**
   * Starts injecting faults.
   * @throws ChaosNotAllowedError in production when it was not allowed; the message says what to set.
   */
  enable(): void {
    if (this.locked) throw new ChaosNotAllowedError(this.name);
    this.on = true;
  }

  /** Stops injecting faults; calls already delayed finish their wait. */
  disable(): void {
    this.on = false;
  }

  /**
   * Replaces the faults with those given (a fault left out is no longer injected) and, when
   * `enabled` is given, switches the policy. Everything is validated first: on error nothing changes.
   * Calls already in progress keep what they were dealt.
   * @throws InvalidOptionError when an option is unknown or out of range.
   * @throws ChaosNotAllowedError for `enabled: true` in production when it was not allowed.
   */
  update(options: ChaosOptions): void {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('chaos', options, 'an options object');
    rejectUnknownOptions(options, NO_NAME, '');
    const faults = resolveFaults(options);
    const enabled = booleanOption(options.enabled, 'enabled', this.on);
    if (enabled && !this.on && this.locked) throw new ChaosNotAllowedError(this.name);
    this.faults = faults;
    this.on = enabled;
  }

  /** The policy's counters since it was built. */
  stats(): ChaosStats {
    return { calls: this.callCount, latency: this.latencyCount, errors: this.errorCount, aborts: this.abortCount };
  }

  /** Runs `fn` under the policy; see {@link Policy.execute}. */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((ctx) => this.run(fn, ctx), context);
  }

  /**
   * Runs `fn`, injecting the faults this call draws.
   * @returns the function's outcome; the configured error; an `OperationAbortedError` (its cause
   *   a {@link ChaosInjectedError}) for an injected abort; the abort reason when the call is
   *   aborted while delayed.
   */
  run<T>(fn: Task<T>, context: CallContext | undefined): Promise<T> {
    const ctx = context ?? NO_CONTEXT;
    if (!this.on) return invoke(fn, ctx);
    if (ctx.aborted) return Promise.reject(abortReasonOf(ctx.abortReason));
    this.callCount++;
    const faults = this.faults;
    let delay = -1;
    if (faults.latencyRate > 0 && this.random() < faults.latencyRate) {
      delay = faults.minDelay === faults.maxDelay ? faults.minDelay : faults.minDelay + this.random() * (faults.maxDelay - faults.minDelay);
    }
    let outcome = PASS;
    if (faults.terminal) {
      const roll = this.random();
      if (roll < faults.abortRate) outcome = ABORT;
      else if (roll >= faults.errorFrom) outcome = FAIL;
    }
    if (delay >= 0) return this.delay(delay, ctx).then(() => this.strike(fn, ctx, outcome, faults));
    return this.strike(fn, ctx, outcome, faults);
  }

  private strike<T>(fn: Task<T>, context: CallContext, outcome: number, faults: Faults): Promise<T> {
    // After a delay: an abort landing between the timer firing and this continuation must not start the method.
    if (context.aborted) return Promise.reject(abortReasonOf(context.abortReason));
    if (outcome === PASS) return invoke(fn, context);
    if (outcome === FAIL) return this.fail(faults);
    return this.abortWhileRunning(fn, context);
  }

  /** Resolves after `ms`, or rejects with the abort reason as soon as the call is aborted; leaves no timer or listener behind. */
  private delay(ms: number, context: CallContext): Promise<void> {
    this.latencyCount++;
    const clock = this.clock;
    return new Promise<void>((resolve, reject) => {
      let removeListener: (() => void) | undefined;
      const timer = clock.setTimeout(() => {
        removeListener?.();
        resolve();
      }, ms);
      if (context !== NO_CONTEXT) {
        removeListener = context.onAbort((reason) => {
          clock.clearTimeout(timer);
          reject(abortReasonOf(reason));
        });
      }
      if (this.injectSource.hasListeners) this.injectSource.emit({ policy: this.name, fault: 'latency', delayMs: ms });
    });
  }

  private fail<T>(faults: Faults): Promise<T> {
    this.errorCount++;
    if (this.injectSource.hasListeners) this.injectSource.emit({ policy: this.name, fault: 'error' });
    if (faults.error === undefined) return Promise.reject(new ChaosInjectedError(this.name, 'error'));
    if (!faults.errorIsFactory) return Promise.reject(faults.error);
    try {
      return Promise.reject((faults.error as () => unknown)());
    } catch (thrown) {
      return Promise.reject(thrown);
    }
  }

  /**
   * Starts `fn` in a context of its own, derived from the call's, and aborts it at the end of the
   * current turn: once the method's synchronous part and the promise callbacks queued meanwhile
   * have run (a Nest handler is reached through several of them), so its signal fires while its
   * work is in flight. The caller is settled once the method has settled and the abort has fired,
   * whatever the method's outcome: a bulkhead around it keeps its permit until then, and nothing
   * of the call outlives it.
   */
  private abortWhileRunning<T>(fn: Task<T>, parent: CallContext): Promise<T> {
    this.abortCount++;
    if (this.injectSource.hasListeners) this.injectSource.emit({ policy: this.name, fault: 'abort' });
    const reason = new OperationAbortedError(new ChaosInjectedError(this.name, 'abort'));
    const call = new CallContext(parent);
    let result: PromiseLike<T> | T;
    try {
      // Entered so that a method reading `getAbortSignal()` (a Nest method) sees this call's signal.
      result = runInContext(call, fn);
    } catch {
      call.abort(reason);
      return Promise.reject(reason);
    }
    return new Promise<T>((_, reject) => {
      let pending = 2;
      const done = (): void => {
        if (--pending > 0) return;
        call.dispose();
        reject(reason);
      };
      const settled = (): void => {
        leaveContext();
        done();
      };
      // A turn boundary, not a delay: nothing to drive on a fake clock, and nothing left once it ran.
      setImmediate(() => {
        call.abort(reason);
        done();
      });
      Promise.resolve(result).then(settled, settled);
    });
  }
}

function resolveFaults(options: ChaosOptions): Faults {
  let latencyRate = 0;
  let minDelay = 0;
  let maxDelay = 0;
  const latency = options.latency;
  if (latency !== undefined) {
    faultObject(latency, 'latency', ['rate', 'delay']);
    latencyRate = rateOption(latency.rate, 'latency.rate');
    const delay: unknown = latency.delay;
    if (delay === undefined) throw new InvalidOptionError('latency.delay', delay, "a duration such as '500ms', or [min, max]");
    if (Array.isArray(delay)) {
      if (delay.length !== 2) throw new InvalidOptionError('latency.delay', delay, 'a duration, or [min, max] of two durations');
      minDelay = toMilliseconds(delay[0], 'latency.delay[0]', { timer: true });
      maxDelay = toMilliseconds(delay[1], 'latency.delay[1]', { timer: true });
      if (maxDelay < minDelay) throw new InvalidOptionError('latency.delay[1]', delay[1], `a duration ≥ latency.delay[0] (${minDelay} ms)`);
    } else {
      minDelay = maxDelay = toMilliseconds(delay, 'latency.delay', { timer: true });
    }
  }
  let errorRate = 0;
  let error: unknown;
  if (options.error !== undefined) {
    faultObject(options.error, 'error', ['rate', 'error']);
    errorRate = rateOption(options.error.rate, 'error.rate');
    error = options.error.error;
  }
  let abortRate = 0;
  if (options.abort !== undefined) {
    faultObject(options.abort, 'abort', ['rate']);
    abortRate = rateOption(options.abort.rate, 'abort.rate');
  }
  if (errorRate + abortRate > 1 + RATE_SUM_SLACK) {
    throw new InvalidOptionError('error.rate', errorRate, `a rate ≤ ${1 - abortRate} (error.rate + abort.rate ≤ 1: a call gets at most one of them)`);
  }
  return {
    latencyRate,
    minDelay,
    maxDelay,
    abortRate,
    errorFrom: 1 - errorRate,
    terminal: abortRate > 0 || errorRate > 0,
    error,
    errorIsFactory: typeof error === 'function',
  };
}

function faultObject(value: unknown, option: string, known: readonly string[]): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidOptionError(option, value, `an object with ${known.join(', ')}`);
  rejectUnknownOptions(value, known, option);
}

function rateOption(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) throw new InvalidOptionError(option, value, 'a number between 0 and 1');
  return value;
}

function booleanOption(value: unknown, option: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidOptionError(option, value, 'true or false');
  return value;
}
