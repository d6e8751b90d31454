import { systemClock, type Clock } from '../../core/clock.js';
import { NO_CONTEXT, type CallContext, type Task } from '../../core/context.js';
import type { PolicyDependencies, PolicyMode } from '../../core/dependencies.js';
import { toMilliseconds } from '../../core/duration.js';
import { httpStatusOf, InvalidOptionError, isOperationAbortedError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { compileMatchers } from '../../core/matchers.js';
import { executeWith, invoke, type Policy } from '../../core/policy.js';
import { isPolicyRejection } from '../../core/rejection.js';
import { enumOption, functionOption, integerOption, numberOption, rejectUnknownOptions } from '../../core/validate.js';
import { CircuitOpenError } from './circuit-breaker.error.js';
import type { CircuitBreakerOptions, CircuitState } from './circuit-breaker.options.js';
import { CountWindow, TimeWindow, type SlidingWindow } from './sliding-window.js';

/** {@link CircuitBreakerOptions} after validation: durations in milliseconds, defaults applied. */
export interface ResolvedCircuitBreakerOptions {
  /** Used in events, errors and metrics. */
  readonly name: string;
  /** `'shadow'`: records and emits as usual, never refuses. */
  readonly mode: PolicyMode;
  /** Whether the window holds the last `windowSize` calls or the calls of the last `windowSize` ms. */
  readonly windowType: 'count' | 'time';
  /** Calls (count window) or milliseconds (time window). */
  readonly windowSize: number;
  /** Buckets of a time window; 1 for a count window. */
  readonly windowBuckets: number;
  /** Calls the window must hold before rates are evaluated. */
  readonly minimumCalls: number;
  /** Failure rate, in percent, at or above which the circuit opens. */
  readonly failureRateThreshold: number;
  /** Slow-call rate, in percent, at or above which the circuit opens. */
  readonly slowCallRateThreshold: number;
  /** Milliseconds above which a call is slow. */
  readonly slowCallDuration: number;
  /** Set in consecutive-failures mode, `undefined` in rate mode. */
  readonly consecutiveFailures: number | undefined;
  /** Milliseconds the circuit stays open before probing. */
  readonly openDuration: number;
  /** Probes admitted in HALF_OPEN. */
  readonly halfOpenMaxCalls: number;
  /** Milliseconds after which an unsettled probe counts as failed. */
  readonly probeTimeout: number;
  /** Which errors count as failures (the others count as successes). */
  readonly isFailure: (error: unknown) => boolean;
  /** The `ignore` matchers as one predicate: errors that count as neither; `undefined` when none. */
  readonly ignore: ((error: unknown) => boolean) | undefined;
}

/** Why a circuit changed state. */
export type CircuitStateChangeReason =
  /** CLOSED → OPEN: the failure rate reached `failureRateThreshold`. */
  | 'failureRate'
  /** CLOSED → OPEN: the slow-call rate reached `slowCallRateThreshold`. */
  | 'slowCallRate'
  /** CLOSED → OPEN: `consecutiveFailures` failures in a row. */
  | 'consecutiveFailures'
  /** OPEN → HALF_OPEN: `openDuration` elapsed. */
  | 'openDurationElapsed'
  /** HALF_OPEN → OPEN: a probe failed. */
  | 'probeFailure'
  /** HALF_OPEN → OPEN: a probe was slow (only when `slowCallRateThreshold` < 100). */
  | 'probeSlow'
  /** HALF_OPEN → OPEN: a probe did not settle within `probeTimeout`. */
  | 'probeTimeout'
  /** HALF_OPEN → CLOSED: `halfOpenMaxCalls` probes succeeded. */
  | 'probesSucceeded'
  /** Manual: {@link CircuitBreakerPolicy.forceOpen}. */
  | 'forceOpen'
  /** Manual: {@link CircuitBreakerPolicy.disable}. */
  | 'disable'
  /** Manual: {@link CircuitBreakerPolicy.reset}. */
  | 'reset';

/** Emitted on every state change. */
export interface CircuitStateChangeEvent {
  /** The breaker's name. */
  readonly breaker: string;
  /** The state it left. */
  readonly from: CircuitState;
  /** The state it entered. */
  readonly to: CircuitState;
  /** What caused the change. */
  readonly reason: CircuitStateChangeReason;
}

/**
 * What the breaker made of a call: `'success'` and `'failure'` as judged by `isFailure`;
 * `'ignored'` for errors that count as neither (`ignore`, caller aborts, our own rejections);
 * `'rejected'` when the breaker refused the call (or, in shadow mode, would have).
 */
export type CircuitCallOutcome = 'success' | 'failure' | 'ignored' | 'rejected';

/**
 * Emitted once per call: when it settles, or when it is rejected. A call that settles after the
 * circuit changed state (or was reset) is reported with its outcome but does not count.
 */
export interface CircuitCallEvent {
  /** The breaker's name. */
  readonly breaker: string;
  /** What the breaker made of the call. */
  readonly outcome: CircuitCallOutcome;
  /** Whether the call took longer than `slowCallDuration`; `false` for a rejection. */
  readonly slow: boolean;
  /** Settle time minus start time on the breaker's clock; 0 for a rejection. */
  readonly durationMs: number;
  /** The call's error, or the {@link CircuitOpenError} of a rejection; absent on success. */
  readonly error?: unknown;
  /** Set on `'rejected'` in shadow mode: the breaker would have refused the call, and let it run. */
  readonly shadow?: boolean;
}

/** A snapshot of a breaker, as returned by {@link CircuitBreakerPolicy.stats}. */
export interface CircuitBreakerStats {
  /** The current state. */
  readonly state: CircuitState;
  /** Calls in the sliding window (ignored calls excluded). */
  readonly calls: number;
  /** Failures in the sliding window. */
  readonly failures: number;
  /** Slow calls in the sliding window, successful or not. */
  readonly slowCalls: number;
  /** Failures per call, in percent; 0 when the window is empty. */
  readonly failureRate: number;
  /** Slow calls per call, in percent; 0 when the window is empty. */
  readonly slowCallRate: number;
  /** Failures in a row since the last success (CLOSED only). */
  readonly consecutiveFailures: number;
  /** When OPEN: milliseconds until the next probe may run. */
  readonly openUntilMs?: number;
  /** When HALF_OPEN: probes running. */
  readonly halfOpenInFlight: number;
}

const KNOWN_OPTIONS = [
  'name',
  'mode',
  'windowType',
  'windowSize',
  'windowBuckets',
  'minimumCalls',
  'failureRateThreshold',
  'slowCallRateThreshold',
  'slowCallDuration',
  'consecutiveFailures',
  'openDuration',
  'halfOpenMaxCalls',
  'probeTimeout',
  'isFailure',
  'ignore',
] as const;

/** The largest count window: its ring holds one byte per call. */
const MAX_COUNT_WINDOW = 1_000_000;
const MAX_BUCKETS = 10_000;
const MAX_PROBES = 10_000;

/** The default failure predicate: everything but client errors (HTTP 400–499) counts. */
export function defaultIsFailure(error: unknown): boolean {
  const status = httpStatusOf(error);
  return status === undefined || status < 400 || status > 499;
}

/**
 * A circuit breaker: counts outcomes over a sliding window (or failures in a row) and, past a
 * threshold, opens, refusing calls with {@link CircuitOpenError} without running them. After
 * `openDuration` it lets exactly `halfOpenMaxCalls` probes through; their success closes it, a
 * failure re-opens it.
 *
 * Time-driven transitions (OPEN → HALF_OPEN, a probe's deadline) need no timer: they are
 * applied when the breaker is next used or read, at the moment they would have fired, so the
 * state is what a timer-driven breaker would show. Every call is tagged with the breaker's
 * generation when admitted; a call that settles after a state change or a reset does not count,
 * so late outcomes never close, re-open or re-schedule anything.
 */
export class CircuitBreakerPolicy implements Policy {
  /** The resolved options. */
  readonly options: ResolvedCircuitBreakerOptions;
  /** The breaker's name, used in events, errors and metrics. */
  readonly name: string;
  private readonly clock: Clock;
  private readonly window: SlidingWindow;
  private readonly stateChanges = new EventSource<CircuitStateChangeEvent>();
  private readonly callEvents = new EventSource<CircuitCallEvent>();
  /** Subscribes to state changes. */
  readonly onStateChange: Event<CircuitStateChangeEvent>;
  /** Subscribes to call outcomes (built only when someone listens). */
  readonly onCall: Event<CircuitCallEvent>;

  private current: CircuitState = 'CLOSED';
  /** Bumped on every transition; a call counts only if the breaker is still in the generation that admitted it. */
  private generation = 0;
  private consecutive = 0;
  private nextProbeAt = 0;
  /** Start times of the probes in flight (HALF_OPEN). */
  private probes: number[] = [];
  private probesSucceeded = 0;

  /**
   * @throws InvalidOptionError naming the option, the value and what is allowed.
   */
  constructor(options: CircuitBreakerOptions = {}, dependencies: PolicyDependencies = {}) {
    this.options = resolveOptions(options);
    this.name = this.options.name;
    this.clock = dependencies.clock ?? systemClock;
    this.window = this.options.windowType === 'count' ? new CountWindow(this.options.windowSize) : new TimeWindow(this.options.windowSize, this.options.windowBuckets);
    this.onStateChange = this.stateChanges.event;
    this.onCall = this.callEvents.event;
  }

  /** The current state, after applying any time-driven transition that is due. */
  get state(): CircuitState {
    if (this.current === 'OPEN' || this.current === 'HALF_OPEN') this.refresh(this.clock.now());
    return this.current;
  }

  /** Counts of the sliding window and the state, after applying any transition that is due. */
  stats(): CircuitBreakerStats {
    const now = this.clock.now();
    this.refresh(now);
    const window = this.window;
    window.advance(now);
    const { calls, failures, slowCalls } = window;
    const state = this.current;
    const stats = {
      state,
      calls,
      failures,
      slowCalls,
      failureRate: calls === 0 ? 0 : (failures * 100) / calls,
      slowCallRate: calls === 0 ? 0 : (slowCalls * 100) / calls,
      consecutiveFailures: this.consecutive,
      halfOpenInFlight: state === 'HALF_OPEN' ? this.probes.length : 0,
    };
    return state === 'OPEN' ? { ...stats, openUntilMs: this.nextProbeAt - now } : stats;
  }

  /** Opens the circuit until {@link reset}: every call is refused (in shadow mode, reported as refused). */
  forceOpen(): void {
    this.transition('FORCED_OPEN', 'forceOpen');
  }

  /** Turns the breaker off until {@link reset}: every call runs and nothing is recorded. */
  disable(): void {
    this.transition('DISABLED', 'disable');
  }

  /** Closes the circuit with an empty window; calls in flight no longer count. */
  reset(): void {
    this.transition('CLOSED', 'reset');
  }

  /**
   * Records an outcome as if a call had just settled, without running anything. Counts only while
   * CLOSED, where it may open the circuit like a real call. For compositions that decide elsewhere
   * and keep this breaker as a warm fallback (the shared breaker of `nest-resilience/redis`).
   */
  recordOutcome(failure: boolean, slow = false): void {
    if (this.current !== 'CLOSED') return;
    this.record(failure, slow, this.clock.now());
  }

  /** Runs `fn` through the breaker; rejects with {@link CircuitOpenError} when the circuit refuses it. */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((resolved) => this.run(fn, resolved), context);
  }

  /** {@link execute} inside an already resolved context, for compositions. */
  run<T>(fn: Task<T>, context: CallContext | undefined): Promise<T> {
    const resolved = context ?? NO_CONTEXT;
    if (this.current === 'CLOSED') return this.runCounted(fn, resolved, this.clock.now());
    return this.runGuarded(fn, resolved);
  }

  private runGuarded<T>(fn: Task<T>, context: CallContext): Promise<T> {
    if (this.current === 'DISABLED') return invoke(fn, context);
    const now = this.clock.now();
    this.refresh(now);
    // Widened again: refresh (and its listeners) may have changed the state narrowed above.
    switch (this.current as CircuitState) {
      case 'CLOSED':
        return this.runCounted(fn, context, now);
      case 'DISABLED': // a state-change listener may have disabled the breaker during refresh
        return invoke(fn, context);
      case 'HALF_OPEN':
        if (this.probes.length + this.probesSucceeded < this.options.halfOpenMaxCalls) {
          this.probes.push(now);
          return this.runCounted(fn, context, now);
        }
        break;
    }
    return this.reject(fn, context, now);
  }

  /** Runs a call whose outcome counts: in CLOSED, into the window; in HALF_OPEN, as a probe. */
  private runCounted<T>(fn: Task<T>, context: CallContext, start: number): Promise<T> {
    const generation = this.generation;
    return invoke(fn, context).then(
      (value) => {
        this.settle(false, undefined, start, generation, context);
        return value;
      },
      (error: unknown) => {
        this.settle(true, error, start, generation, context);
        throw error;
      },
    );
  }

  private reject<T>(fn: Task<T>, context: CallContext, now: number): Promise<T> {
    const state = this.current;
    const retryAfterMs = state === 'OPEN' ? this.nextProbeAt - now : state === 'HALF_OPEN' ? Math.max(0, this.oldestProbeDeadline() - now) : undefined;
    if (this.options.mode === 'shadow') {
      if (this.callEvents.hasListeners) {
        const error = new CircuitOpenError(this.name, state, retryAfterMs);
        this.callEvents.emit({ breaker: this.name, outcome: 'rejected', slow: false, durationMs: 0, error, shadow: true });
      }
      return invoke(fn, context);
    }
    const error = new CircuitOpenError(this.name, state, retryAfterMs);
    if (this.callEvents.hasListeners) this.callEvents.emit({ breaker: this.name, outcome: 'rejected', slow: false, durationMs: 0, error });
    return Promise.reject(error);
  }

  private settle(failed: boolean, error: unknown, start: number, generation: number, context: CallContext): void {
    const now = this.clock.now();
    const durationMs = now - start;
    const slow = durationMs > this.options.slowCallDuration;
    const outcome = failed ? this.classify(error, context) : 'success';
    // Due transitions happened before this settlement: apply them first, so a probe that
    // outlived its deadline finds its generation gone.
    if (this.current === 'OPEN' || this.current === 'HALF_OPEN') this.refresh(now);
    if (this.callEvents.hasListeners) {
      this.callEvents.emit(failed ? { breaker: this.name, outcome, slow, durationMs, error } : { breaker: this.name, outcome, slow, durationMs });
    }
    // Checked after emitting: a listener may have reset the breaker.
    if (generation !== this.generation) return;
    if (this.current === 'HALF_OPEN') this.settleProbe(start, outcome, slow, now);
    else if (outcome !== 'ignored') this.record(outcome === 'failure', slow, now);
  }

  private classify(error: unknown, context: CallContext): 'success' | 'failure' | 'ignored' {
    if (isPolicyRejection(error) || isOperationAbortedError(error) || context.aborted) return 'ignored';
    try {
      const ignore = this.options.ignore;
      if (ignore !== undefined && ignore(error)) return 'ignored';
      return this.options.isFailure(error) ? 'failure' : 'success';
    } catch {
      // A throwing predicate must not replace the call's own error; count the call as failed.
      return 'failure';
    }
  }

  private record(failure: boolean, slow: boolean, now: number): void {
    const window = this.window;
    window.record(now, failure, slow);
    this.consecutive = failure ? this.consecutive + 1 : 0;
    const options = this.options;
    if (options.consecutiveFailures !== undefined) {
      if (this.consecutive >= options.consecutiveFailures) this.open(now, 'consecutiveFailures');
      return;
    }
    const calls = window.calls;
    if (calls < options.minimumCalls) return;
    // Compared as products, so 50 % of 10 calls is exactly 5 failures, without rounding.
    if (window.failures * 100 >= options.failureRateThreshold * calls) this.open(now, 'failureRate');
    else if (window.slowCalls * 100 >= options.slowCallRateThreshold * calls) this.open(now, 'slowCallRate');
  }

  private settleProbe(start: number, outcome: 'success' | 'failure' | 'ignored', slow: boolean, now: number): void {
    const probes = this.probes;
    // Probes with equal start times are interchangeable: removing any one frees the same deadline.
    const index = probes.indexOf(start);
    if (index >= 0) probes.splice(index, 1);
    // An ignored probe decides nothing: its permit goes back to the budget.
    if (outcome === 'ignored') return;
    if (outcome === 'failure') this.open(now, 'probeFailure');
    else if (slow && this.options.slowCallRateThreshold < 100) this.open(now, 'probeSlow');
    else if (++this.probesSucceeded >= this.options.halfOpenMaxCalls) this.transition('CLOSED', 'probesSucceeded');
  }

  /** Applies the transitions that came due by `now`, each at the moment it came due. */
  private refresh(now: number): void {
    if (this.current === 'HALF_OPEN' && this.probes.length > 0) {
      const deadline = this.oldestProbeDeadline();
      if (now >= deadline) this.open(deadline, 'probeTimeout');
    }
    if (this.current === 'OPEN' && now >= this.nextProbeAt) this.transition('HALF_OPEN', 'openDurationElapsed');
  }

  private oldestProbeDeadline(): number {
    const probes = this.probes;
    let oldest = probes[0]!;
    for (let i = 1; i < probes.length; i++) if (probes[i]! < oldest) oldest = probes[i]!;
    return oldest + this.options.probeTimeout;
  }

  private open(at: number, reason: CircuitStateChangeReason): void {
    this.nextProbeAt = at + this.options.openDuration;
    this.transition('OPEN', reason);
  }

  private transition(to: CircuitState, reason: CircuitStateChangeReason): void {
    const from = this.current;
    this.current = to;
    this.generation++;
    this.probes.length = 0;
    this.probesSucceeded = 0;
    if (to === 'CLOSED') {
      this.window.clear();
      this.consecutive = 0;
    } else if (to === 'DISABLED') {
      // Nothing is recorded while disabled: stale counts would only mislead.
      this.window.clear();
      this.consecutive = 0;
    }
    if (from !== to && this.stateChanges.hasListeners) this.stateChanges.emit({ breaker: this.name, from, to, reason });
  }
}

function resolveOptions(options: CircuitBreakerOptions): ResolvedCircuitBreakerOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('circuitBreaker', options, 'an options object');
  rejectUnknownOptions(options, KNOWN_OPTIONS, '');
  const name = options.name ?? 'default';
  if (typeof name !== 'string' || name === '') throw new InvalidOptionError('name', name, 'a non-empty string');
  const mode = enumOption<PolicyMode>(options.mode, 'mode', 'enforce', ['enforce', 'shadow']);
  const windowType = enumOption(options.windowType, 'windowType', 'count', ['count', 'time']);

  let windowSize: number;
  let windowBuckets = 1;
  let minimumCalls: number;
  if (windowType === 'count') {
    windowSize = integerOption(options.windowSize, 'windowSize', 100, 1, MAX_COUNT_WINDOW);
    // Only an explicit minimumCalls above the window is an error; the default shrinks to fit.
    minimumCalls = integerOption(options.minimumCalls, 'minimumCalls', Math.min(10, windowSize), 1, windowSize);
  } else {
    windowSize = toMilliseconds(options.windowSize ?? 60_000, 'windowSize', { allowZero: false, timer: true });
    windowBuckets = integerOption(options.windowBuckets, 'windowBuckets', Math.min(10, Math.floor(windowSize)), 1, MAX_BUCKETS);
    if (windowSize / windowBuckets < 1) {
      throw new InvalidOptionError('windowBuckets', windowBuckets, `at most ${Math.floor(windowSize)} buckets for a ${windowSize} ms window (a bucket must span ≥ 1 ms)`);
    }
    minimumCalls = integerOption(options.minimumCalls, 'minimumCalls', 10, 1);
  }
  if (windowType === 'count' && options.windowBuckets !== undefined) integerOption(options.windowBuckets, 'windowBuckets', 1, 1, MAX_BUCKETS);

  const openDuration = toMilliseconds(options.openDuration ?? 30_000, 'openDuration', { allowZero: false, timer: true });
  return {
    name,
    mode,
    windowType,
    windowSize,
    windowBuckets,
    minimumCalls,
    failureRateThreshold: numberOption(options.failureRateThreshold, 'failureRateThreshold', 50, 0, 100, { exclusiveMin: true }),
    slowCallRateThreshold: numberOption(options.slowCallRateThreshold, 'slowCallRateThreshold', 100, 0, 100, { exclusiveMin: true }),
    slowCallDuration: toMilliseconds(options.slowCallDuration ?? 60_000, 'slowCallDuration', { timer: true }),
    consecutiveFailures: options.consecutiveFailures === undefined ? undefined : integerOption(options.consecutiveFailures, 'consecutiveFailures', 1, 1),
    openDuration,
    halfOpenMaxCalls: integerOption(options.halfOpenMaxCalls, 'halfOpenMaxCalls', 1, 1, MAX_PROBES),
    probeTimeout: options.probeTimeout === undefined ? openDuration : toMilliseconds(options.probeTimeout, 'probeTimeout', { allowZero: false, timer: true }),
    isFailure: functionOption<(error: unknown) => boolean>(options.isFailure, 'isFailure') ?? defaultIsFailure,
    ignore: compileMatchers(options.ignore, 'ignore'),
  };
}
