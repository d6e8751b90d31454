import { randomUUID } from 'node:crypto';
import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { NO_CONTEXT, type CallContext, type Task } from '../../core/context.js';
import { toMilliseconds, type Duration } from '../../core/duration.js';
import { InvalidOptionError, isOperationAbortedError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { executeWith, invoke, type Policy } from '../../core/policy.js';
import { isPolicyRejection } from '../../core/rejection.js';
import { integerOption } from '../../core/validate.js';
import { CircuitOpenError } from '../../policies/circuit-breaker/circuit-breaker.error.js';
import type { CircuitBreakerOptions, CircuitState } from '../../policies/circuit-breaker/circuit-breaker.options.js';
import {
  CircuitBreakerPolicy,
  type CircuitBreakerStats,
  type CircuitCallEvent,
  type CircuitStateChangeEvent,
  type CircuitStateChangeReason,
  type ResolvedCircuitBreakerOptions,
} from '../../policies/circuit-breaker/circuit-breaker.policy.js';
import { CountWindow, TimeWindow, type SlidingWindow } from '../../policies/circuit-breaker/sliding-window.js';
import { ADMIN_SCRIPT, PROBE_SCRIPT, SETTLE_SCRIPT, SYNC_SCRIPT } from './shared-circuit-breaker.scripts.js';
import {
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_KEY_PREFIX,
  hashTag,
  isPermanentRedisError,
  isScriptingClient,
  RedisTimeTracker,
  runScript,
  SharedRedisReplyError,
  type RedisClient,
  type RedisScript,
} from './shared-redis.js';

/** Options of a {@link SharedCircuitBreaker}: those of a circuit breaker, plus the fleet's. */
export interface SharedCircuitBreakerOptions extends CircuitBreakerOptions {
  /**
   * Instances that must each see the threshold crossed, on their own calls, before the circuit
   * opens fleet-wide (an integer ≥ 1). An instance counts when its own window crosses a rate
   * threshold over at least `ceil(minimumCalls / quorum)` calls (or, in consecutive-failures mode,
   * holds `ceil(consecutiveFailures / quorum)` failures in a row). With a quorum, one bad instance
   * (a broken network path, a bad deploy) cannot open the circuit for everyone; the price is that
   * the fleet opens later, or not at all when fewer than `quorum` instances call the downstream.
   * An instance that does not reach the quorum keeps calling: it does not open for itself.
   * @default 1 (the fleet-wide window alone decides)
   */
  quorum?: number;
  /**
   * How often an instance that is receiving calls pushes its outcomes and reads the shared state.
   * Other instances see a state change at most this long (plus a round trip) after it happens;
   * an instance idle for longer reads the state before its next call. @default '250ms'
   */
  syncInterval?: Duration;
}

/** What a {@link SharedCircuitBreaker} needs besides its options. */
export interface SharedCircuitBreakerDependencies {
  /** The ioredis client (`Redis` or `Cluster`). Not closed by the breaker. */
  client: RedisClient;
  /** Prefix of the breaker's keys, inside its hash tag. @default 'nest-resilience:' */
  keyPrefix?: string;
  /** Local time: timers, call durations, the cached "open until". Must follow real time. @default systemClock */
  clock?: Clock;
  /** This instance's identity in the fleet (the unit of the quorum). @default a random UUID */
  instanceId?: string;
  /** Bound on one Redis round trip; past it the breaker decides locally. @default 500 ms */
  commandTimeout?: Duration;
}

/** Whether the breaker decides from the fleet's state in Redis or from its local fallback. */
export type SharedStateSource = 'redis' | 'local';

/** Emitted when the breaker loses Redis (and falls back to its local breaker) or gets it back. */
export interface SharedStoreStatusEvent {
  /** The breaker's name. */
  readonly breaker: string;
  /** `'local'`: Redis failed, the local breaker decides; `'redis'`: resynchronised with the fleet. */
  readonly source: SharedStateSource;
  /** The error that caused the fallback. */
  readonly error?: unknown;
}

/** A snapshot of a shared breaker: the fleet's figures as of the last synchronisation. */
export interface SharedCircuitBreakerStats extends CircuitBreakerStats {
  /** Where the state comes from: the fleet (`'redis'`) or the local fallback. */
  readonly source: SharedStateSource;
  /** Instances with outcomes in the fleet window at the last synchronisation; -1 when unknown. */
  readonly instances: number;
  /** Instances that crossed the thresholds on their own at the last synchronisation; -1 when unknown. */
  readonly votes: number;
  /** This instance's own window. */
  readonly local: { readonly calls: number; readonly failures: number; readonly slowCalls: number; readonly consecutiveFailures: number };
  /** Milliseconds since the last successful synchronisation; `Infinity` before the first. */
  readonly lastSyncAgoMs: number;
}

/** The result of a fleet-wide operation (forceOpen, disable, reset). */
export interface SharedAdminResult {
  /** Whether Redis applied it. When `false` it applies locally and is pushed to Redis on recovery. */
  readonly fleetWide: boolean;
  /** Why Redis did not apply it. */
  readonly error?: unknown;
}

interface View {
  readonly code: string;
  readonly now: number;
  readonly state: CircuitState;
  readonly gen: number;
  readonly openUntil: number;
  readonly reason: CircuitStateChangeReason;
  readonly calls: number;
  readonly failures: number;
  readonly slowCalls: number;
  readonly consecutive: number;
  readonly instances: number;
  readonly votes: number;
  readonly probes: number;
  readonly probesSucceeded: number;
}

type Outcome = 'success' | 'failure' | 'ignored';
type AdminTarget = 'FORCED_OPEN' | 'DISABLED' | 'CLOSED';

const STATES: readonly CircuitState[] = ['CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED'];
const DAY_MS = 86_400_000;

/**
 * A circuit breaker whose window and state are shared by every instance of a service through
 * Redis, so the fleet opens together and probes the downstream together.
 *
 * - **No round trip per call while CLOSED or OPEN.** Each instance records outcomes in its own
 *   window and pushes it every `syncInterval` while it receives calls (at once when its own
 *   window crosses a threshold); one Lua script stores it, evaluates the fleet-wide thresholds
 *   (`minimumCalls`, failure rate, slow-call rate, or failures in a row) and flips the shared state
 *   atomically, with Redis `TIME` as the clock. The answer is cached: an open circuit refuses calls
 *   locally until the cached "open until". Other instances see a change within one sync interval
 *   plus a round trip; an instance idle for longer reads the state before its next call.
 * - **Fleet-wide half-open budget.** Each probe is a lease in Redis: exactly `halfOpenMaxCalls`
 *   probes run across all instances. A lease expires after `probeTimeout` and then counts as a
 *   failed probe (the circuit re-opens), so a dead instance cannot pin HALF_OPEN.
 * - **Quorum.** See {@link SharedCircuitBreakerOptions.quorum}.
 * - **Fleet-wide operations.** {@link forceOpen}, {@link disable} and {@link reset} apply at once
 *   locally and to every instance through Redis.
 * - **Redis down.** Every round trip is bounded by `commandTimeout`, and a client that is
 *   reconnecting fails at once (nothing waits in ioredis's offline queue, and a command replayed
 *   after a reconnect is dropped by the script as stale). On failure the instance falls back to a
 *   local {@link CircuitBreakerPolicy} with the same options, kept warm with this instance's own
 *   outcomes of the current fleet generation: a fleet-wide FORCED_OPEN, DISABLED or OPEN known
 *   before the outage is honoured (OPEN until its end), then the local breaker decides alone.
 *   (Outcomes recorded between the outage and its detection, at the next sync, count locally.) It retries Redis every sync interval and adopts
 *   the fleet's state when Redis answers again; a fleet-wide operation made meanwhile is pushed first.
 *
 * Semantics that differ from the local breaker, by design: the fleet window is the union of each
 * instance's own window (for a count window: the last `windowSize` calls of each instance); an
 * instance that stops syncing drops out of it after the window's duration (count windows: after
 * 60 s or 20 sync intervals); failures in a row are counted per pushed batch, so across instances
 * "in a row" means "with no success reported in between". Every instance must use the same options.
 *
 * @example
 * const breaker = new SharedCircuitBreaker(
 *   { name: 'payments', failureRateThreshold: 50, quorum: 2 },
 *   { client: redis, keyPrefix: 'shop:' },
 * );
 * const receipt = await breaker.execute(() => payments.charge(order));
 */
export class SharedCircuitBreaker implements Policy {
  /** The resolved options of the breaker (those of its local fallback). */
  readonly options: ResolvedCircuitBreakerOptions;
  /** The breaker's name, used in events, errors and its Redis keys. */
  readonly name: string;
  /** Instances that must each cross the thresholds before the fleet opens. */
  readonly quorum: number;
  /** This instance's identity in the fleet. */
  readonly instanceId: string;
  /** Subscribes to state changes seen by this instance (fleet transitions, and local ones during an outage). */
  readonly onStateChange: Event<CircuitStateChangeEvent>;
  /** Subscribes to call outcomes. */
  readonly onCall: Event<CircuitCallEvent>;
  /** Subscribes to the loss and recovery of Redis. */
  readonly onStoreStatusChange: Event<SharedStoreStatusEvent>;

  private readonly client: RedisClient;
  private readonly clock: Clock;
  private readonly keys: readonly string[];
  private readonly config: ReadonlyArray<string | number>;
  private readonly syncInterval: number;
  private readonly commandTimeout: number;
  private readonly staleAfter: number;
  private readonly immediateSyncGap: number;
  private readonly voteCalls: number;
  private readonly voteConsecutive: number;
  private readonly time: RedisTimeTracker;
  private readonly local: CircuitBreakerPolicy;
  private readonly window: SlidingWindow;
  private readonly stateChanges = new EventSource<CircuitStateChangeEvent>();
  private readonly callEvents = new EventSource<CircuitCallEvent>();
  private readonly statusEvents = new EventSource<SharedStoreStatusEvent>();

  // The fleet's state as last seen (or as set by a local fleet-wide operation).
  private sharedState: CircuitState = 'CLOSED';
  private sharedGen: number | undefined = undefined;
  private openUntil = 0;
  private fleet = { calls: 0, failures: 0, slowCalls: 0, consecutive: 0, instances: -1, votes: -1, probes: 0 };
  private syncedAt = -Infinity;

  // This instance's outcomes in the current generation.
  private consecutive = 0;
  private batchTrailing = 0;
  private batchHadSuccess = false;

  private degraded = false;
  private closed = false;
  private forwardLocalEvents = true;
  private syncTimer: TimerHandle | undefined = undefined;
  private recoveryTimer: TimerHandle | undefined = undefined;
  private syncing: Promise<void> | undefined = undefined;
  private followUp: Promise<void> | undefined = undefined;
  private lastSyncStart = -Infinity;
  private probeAcquiring = false;
  private probeDeniedUntil = 0;
  private leaseSeq = 0;
  /** Replies to commands sent before this sequence number are ignored (a fleet-wide operation superseded them). */
  private commandSeq = 0;
  private viewFloor = 0;
  private pendingAdmin: { target: AdminTarget; reason: CircuitStateChangeReason } | undefined = undefined;
  private warnedPermanent = false;

  /**
   * @throws InvalidOptionError naming the option, the value and what is allowed.
   */
  constructor(options: SharedCircuitBreakerOptions, dependencies: SharedCircuitBreakerDependencies) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('circuitBreaker', options, 'an options object');
    if (typeof dependencies !== 'object' || dependencies === null) throw new InvalidOptionError('dependencies', dependencies, '{ client, keyPrefix?, clock?, instanceId?, commandTimeout? }');
    const { quorum, syncInterval, ...breakerOptions } = options;
    const clock = dependencies.clock ?? systemClock;
    this.local = new CircuitBreakerPolicy(breakerOptions, { clock });
    this.options = this.local.options;
    this.name = this.options.name;
    this.quorum = integerOption(quorum, 'quorum', 1, 1, 10_000);
    this.syncInterval = toMilliseconds(syncInterval ?? 250, 'syncInterval', { allowZero: false, timer: true });
    if (!isScriptingClient(dependencies.client)) throw new InvalidOptionError('client', dependencies.client, 'an ioredis Redis or Cluster instance');
    this.client = dependencies.client;
    this.clock = clock;
    const keyPrefix = dependencies.keyPrefix ?? DEFAULT_KEY_PREFIX;
    if (typeof keyPrefix !== 'string') throw new InvalidOptionError('keyPrefix', keyPrefix, 'a string');
    const instanceId = dependencies.instanceId ?? randomUUID();
    if (typeof instanceId !== 'string' || instanceId === '') throw new InvalidOptionError('instanceId', instanceId, 'a non-empty string');
    this.instanceId = instanceId;
    this.commandTimeout = toMilliseconds(dependencies.commandTimeout ?? DEFAULT_COMMAND_TIMEOUT_MS, 'commandTimeout', { allowZero: false, timer: true });
    // An instance receiving calls syncs every interval; a cache older than two intervals belongs to an idle one.
    this.staleAfter = 2 * this.syncInterval;
    this.immediateSyncGap = this.syncInterval / 5;
    this.time = new RedisTimeTracker(clock);

    const tag = hashTag(keyPrefix, 'breaker', this.name);
    this.keys = [`${tag}:state`, `${tag}:window`, `${tag}:probes`];
    const resolved = this.options;
    const snapshotTtl = resolved.windowType === 'time' ? Math.ceil(resolved.windowSize) : Math.max(60_000, 20 * this.syncInterval);
    const keyTtl = Math.max(DAY_MS, resolved.openDuration + resolved.probeTimeout + snapshotTtl);
    this.config = [
      resolved.minimumCalls,
      resolved.failureRateThreshold,
      resolved.slowCallRateThreshold,
      resolved.consecutiveFailures ?? 0,
      this.quorum,
      resolved.openDuration,
      resolved.probeTimeout,
      resolved.halfOpenMaxCalls,
      snapshotTtl,
      keyTtl,
    ];
    this.voteCalls = Math.ceil(resolved.minimumCalls / this.quorum);
    this.voteConsecutive = Math.ceil((resolved.consecutiveFailures ?? 0) / this.quorum);
    this.window = resolved.windowType === 'count' ? new CountWindow(resolved.windowSize) : new TimeWindow(resolved.windowSize, resolved.windowBuckets);

    this.onStateChange = this.stateChanges.event;
    this.onCall = this.callEvents.event;
    this.onStoreStatusChange = this.statusEvents.event;
    // The local breaker speaks for this one only while it decides (Redis down).
    this.local.onStateChange((event) => {
      if (this.forwardLocalEvents && (this.degraded || this.closed) && this.stateChanges.hasListeners) this.stateChanges.emit(event);
    });
    this.local.onCall((event) => {
      if ((this.degraded || this.closed) && this.callEvents.hasListeners) this.callEvents.emit(event);
    });
  }

  /** The current state: the fleet's as last seen, or the local fallback's while Redis is down. */
  get state(): CircuitState {
    const now = this.clock.now();
    if (this.degraded || this.closed) return this.fallbackState(now);
    this.refreshLocal(now);
    return this.sharedState;
  }

  /** Where decisions come from right now. */
  get source(): SharedStateSource {
    return this.degraded || this.closed ? 'local' : 'redis';
  }

  /** The fleet's figures as of the last synchronisation (the local breaker's while Redis is down). */
  stats(): SharedCircuitBreakerStats {
    const now = this.clock.now();
    this.window.advance(now);
    const local = { calls: this.window.calls, failures: this.window.failures, slowCalls: this.window.slowCalls, consecutiveFailures: this.consecutive };
    const lastSyncAgoMs = now - this.syncedAt;
    if (this.degraded || this.closed) {
      const state = this.fallbackState(now);
      const stats = this.local.stats();
      const openUntilMs = state === 'OPEN' && this.sharedState === 'OPEN' && this.openUntil > now ? this.openUntil - now : stats.openUntilMs;
      return { ...stats, state, ...(openUntilMs === undefined ? {} : { openUntilMs }), source: 'local', instances: -1, votes: -1, local, lastSyncAgoMs };
    }
    this.refreshLocal(now);
    const { calls, failures, slowCalls } = this.fleet;
    const state = this.sharedState;
    const stats = {
      state,
      calls,
      failures,
      slowCalls,
      failureRate: calls === 0 ? 0 : (failures * 100) / calls,
      slowCallRate: calls === 0 ? 0 : (slowCalls * 100) / calls,
      consecutiveFailures: this.fleet.consecutive,
      halfOpenInFlight: state === 'HALF_OPEN' ? this.fleet.probes : 0,
      source: 'redis' as const,
      instances: this.fleet.instances,
      votes: this.fleet.votes,
      local,
      lastSyncAgoMs,
    };
    return state === 'OPEN' ? { ...stats, openUntilMs: Math.max(0, this.openUntil - now) } : stats;
  }

  /** Opens the circuit fleet-wide until {@link reset}. Never rejects. */
  forceOpen(): Promise<SharedAdminResult> {
    return this.admin('FORCED_OPEN', 'forceOpen');
  }

  /** Turns the breaker off fleet-wide until {@link reset}: every call runs and nothing is recorded. Never rejects. */
  disable(): Promise<SharedAdminResult> {
    return this.admin('DISABLED', 'disable');
  }

  /** Closes the circuit fleet-wide with an empty window; calls in flight no longer count. Never rejects. */
  reset(): Promise<SharedAdminResult> {
    return this.admin('CLOSED', 'reset');
  }

  /**
   * Pushes this instance's outcomes and reads the fleet's state now, instead of at the next sync
   * interval. Never rejects: a failure switches the breaker to its local fallback.
   */
  sync(): Promise<void> {
    if (this.syncing === undefined) return this.startSync();
    return (this.followUp ??= this.syncing.then(() => {
      this.followUp = undefined;
      return this.sync();
    }));
  }

  /**
   * Stops the breaker's timers (sync, recovery). Later calls are decided by the local breaker.
   * Does not close the Redis client, which belongs to the caller. Idempotent.
   */
  close(): void {
    this.closed = true;
    if (this.syncTimer !== undefined) this.clock.clearTimeout(this.syncTimer);
    if (this.recoveryTimer !== undefined) this.clock.clearTimeout(this.recoveryTimer);
    this.syncTimer = this.recoveryTimer = undefined;
  }

  /** Runs `fn` through the breaker; rejects with {@link CircuitOpenError} when the circuit refuses it. */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((resolved) => this.run(fn, resolved), context);
  }

  /** {@link execute} inside an already resolved context, for compositions. */
  run<T>(fn: Task<T>, context: CallContext | undefined): Promise<T> {
    const ctx = context ?? NO_CONTEXT;
    if (this.degraded || this.closed) return this.runLocally(fn, ctx);
    const now = this.clock.now();
    if (now - this.syncedAt > this.staleAfter) {
      // Idle for a while: the cached state may be old. One bounded round trip first.
      return this.sync().then(() => (this.degraded || this.closed ? this.runLocally(fn, ctx) : this.decide(fn, ctx, this.clock.now())));
    }
    return this.decide(fn, ctx, now);
  }

  private decide<T>(fn: Task<T>, context: CallContext, now: number): Promise<T> {
    this.touch(now);
    this.refreshLocal(now);
    switch (this.sharedState) {
      case 'CLOSED':
        return this.runClosed(fn, context, now);
      case 'DISABLED':
        return invoke(fn, context);
      case 'FORCED_OPEN':
        return this.reject(fn, context, 'FORCED_OPEN', undefined);
      case 'OPEN':
        return this.reject(fn, context, 'OPEN', Math.max(0, this.openUntil - now));
      case 'HALF_OPEN':
        // One probe request in flight per instance; after a refusal, ask again at the next sync.
        if (this.probeAcquiring || now < this.probeDeniedUntil) return this.reject(fn, context, 'HALF_OPEN', Math.max(this.probeDeniedUntil - now, 0) || this.syncInterval);
        return this.acquireProbe(fn, context);
    }
  }

  /** The decision while Redis is unavailable (or after close): the fleet's lasting states first, then the local breaker. */
  private runLocally<T>(fn: Task<T>, context: CallContext): Promise<T> {
    const now = this.clock.now();
    switch (this.sharedState) {
      case 'FORCED_OPEN':
        return this.reject(fn, context, 'FORCED_OPEN', undefined);
      case 'DISABLED':
        return invoke(fn, context);
      case 'OPEN':
        if (now < this.openUntil) return this.reject(fn, context, 'OPEN', this.openUntil - now);
        break;
    }
    return this.local.run(fn, context);
  }

  private fallbackState(now: number): CircuitState {
    const state = this.sharedState;
    if (state === 'FORCED_OPEN' || state === 'DISABLED') return state;
    if (state === 'OPEN' && now < this.openUntil) return 'OPEN';
    return this.local.state;
  }

  /** Anticipates OPEN → HALF_OPEN at the cached "open until", as the fleet will when next asked. */
  private refreshLocal(now: number): void {
    if (this.sharedState === 'OPEN' && now >= this.openUntil) {
      this.sharedState = 'HALF_OPEN';
      this.probeDeniedUntil = 0;
      this.emitState('OPEN', 'HALF_OPEN', 'openDurationElapsed');
    }
  }

  private runClosed<T>(fn: Task<T>, context: CallContext, start: number): Promise<T> {
    const gen = this.sharedGen;
    return invoke(fn, context).then(
      (value) => {
        this.settleClosed(false, undefined, start, gen, context);
        return value;
      },
      (error: unknown) => {
        this.settleClosed(true, error, start, gen, context);
        throw error;
      },
    );
  }

  private settleClosed(failed: boolean, error: unknown, start: number, gen: number | undefined, context: CallContext): void {
    const now = this.clock.now();
    const durationMs = now - start;
    const slow = durationMs > this.options.slowCallDuration;
    const outcome = failed ? this.classify(error, context) : 'success';
    if (this.callEvents.hasListeners) {
      this.callEvents.emit(failed ? { breaker: this.name, outcome, slow, durationMs, error } : { breaker: this.name, outcome, slow, durationMs });
    }
    // Admitted under another generation (the fleet changed state since), or the fallback took over.
    if (gen !== this.sharedGen || this.sharedState !== 'CLOSED' || this.degraded || this.closed || outcome === 'ignored') return;
    const failure = outcome === 'failure';
    this.window.record(now, failure, slow);
    // Mirrored into the local fallback, so an outage starts from what this instance has seen.
    this.local.recordOutcome(failure, slow);
    if (failure) {
      this.consecutive++;
      this.batchTrailing++;
    } else {
      this.consecutive = 0;
      this.batchTrailing = 0;
      this.batchHadSuccess = true;
    }
    // This instance's own window crossed: it may be the outcome that opens the fleet, push it now.
    if (failure && this.crossesOnItsOwn() && now - this.lastSyncStart >= this.immediateSyncGap) void this.sync();
  }

  private crossesOnItsOwn(): boolean {
    const options = this.options;
    if (options.consecutiveFailures !== undefined) return this.consecutive >= this.voteConsecutive;
    const { calls, failures, slowCalls } = this.window;
    return calls >= this.voteCalls && (failures * 100 >= options.failureRateThreshold * calls || slowCalls * 100 >= options.slowCallRateThreshold * calls);
  }

  private classify(error: unknown, context: CallContext): Outcome {
    if (isPolicyRejection(error) || isOperationAbortedError(error) || context.aborted) return 'ignored';
    try {
      const ignore = this.options.ignore;
      if (ignore !== undefined && ignore(error)) return 'ignored';
      return this.options.isFailure(error) ? 'failure' : 'success';
    } catch {
      return 'failure';
    }
  }

  private reject<T>(fn: Task<T>, context: CallContext, state: CircuitState, retryAfterMs: number | undefined): Promise<T> {
    const error = new CircuitOpenError(this.name, state, retryAfterMs);
    if (this.options.mode === 'shadow') {
      if (this.callEvents.hasListeners) this.callEvents.emit({ breaker: this.name, outcome: 'rejected', slow: false, durationMs: 0, error, shadow: true });
      return invoke(fn, context);
    }
    if (this.callEvents.hasListeners) this.callEvents.emit({ breaker: this.name, outcome: 'rejected', slow: false, durationMs: 0, error });
    return Promise.reject(error);
  }

  private acquireProbe<T>(fn: Task<T>, context: CallContext): Promise<T> {
    this.probeAcquiring = true;
    const lease = `${this.instanceId}#${++this.leaseSeq}`;
    return this.command(PROBE_SCRIPT, [lease]).then(
      ({ view, current }) => {
        this.probeAcquiring = false;
        const now = this.clock.now();
        if (this.degraded || this.closed) {
          // The fallback took over while we asked: give the lease back to the budget.
          if (view.code === 'granted') this.settleProbe(lease, view.gen, 'ignored', false);
          return this.runLocally(fn, context);
        }
        if (!current) {
          // A fleet-wide operation (forceOpen, disable, reset) was made meanwhile: it decides.
          if (view.code === 'granted') this.settleProbe(lease, view.gen, 'ignored', false);
          return this.decide(fn, context, now);
        }
        this.applyView(view);
        switch (view.code) {
          case 'granted':
            return this.runProbe(fn, context, lease, view.gen, now);
          case 'closed':
            return this.runClosed(fn, context, now);
          case 'disabled':
            return invoke(fn, context);
        }
        // Denied (or a stale command): ask again at the next sync; meanwhile refuse as the fleet does.
        if (view.code !== 'stale') this.probeDeniedUntil = now + this.syncInterval;
        const state = this.sharedState;
        return this.reject(fn, context, state === 'CLOSED' || state === 'DISABLED' ? 'HALF_OPEN' : state, state === 'OPEN' ? Math.max(0, this.openUntil - now) : this.syncInterval);
      },
      (error: unknown) => {
        this.probeAcquiring = false;
        this.fail(error);
        return this.runLocally(fn, context);
      },
    );
  }

  private runProbe<T>(fn: Task<T>, context: CallContext, lease: string, gen: number, start: number): Promise<T> {
    return invoke(fn, context).then(
      (value) => {
        this.probeSettled(lease, gen, false, undefined, start, context);
        return value;
      },
      (error: unknown) => {
        this.probeSettled(lease, gen, true, error, start, context);
        throw error;
      },
    );
  }

  private probeSettled(lease: string, gen: number, failed: boolean, error: unknown, start: number, context: CallContext): void {
    const durationMs = this.clock.now() - start;
    const slow = durationMs > this.options.slowCallDuration;
    const outcome = failed ? this.classify(error, context) : 'success';
    if (this.callEvents.hasListeners) {
      this.callEvents.emit(failed ? { breaker: this.name, outcome, slow, durationMs, error } : { breaker: this.name, outcome, slow, durationMs });
    }
    this.settleProbe(lease, gen, outcome, slow);
  }

  /** Reports a probe's outcome to the fleet; the caller has its result already. An unreported probe's lease expires. */
  private settleProbe(lease: string, gen: number, outcome: Outcome, slow: boolean): void {
    this.command(SETTLE_SCRIPT, [lease, gen, outcome, slow ? '1' : '0']).then(
      ({ view, current }) => {
        if (current && !this.degraded && !this.closed) this.applyView(view);
      },
      (error: unknown) => this.fail(error),
    );
  }

  private async admin(target: AdminTarget, reason: CircuitStateChangeReason): Promise<SharedAdminResult> {
    const now = this.clock.now();
    const from = this.degraded || this.closed ? this.fallbackState(now) : this.sharedState;
    this.sharedState = target;
    this.sharedGen = undefined;
    this.openUntil = 0;
    this.clearWindow();
    // Replies to commands sent before this operation describe the state it replaces.
    this.viewFloor = this.commandSeq + 1;
    if (target === 'CLOSED') this.resetLocal();
    if (from !== target) this.emitState(from, target, reason);
    const pending = { target, reason };
    this.pendingAdmin = pending;
    if (this.closed) return { fleetWide: false };
    if (this.degraded) {
      // Pushed to Redis when it answers again.
      return { fleetWide: false, error: new Error('Redis is unavailable; applied locally, pushed to Redis on recovery') };
    }
    try {
      await this.pushAdmin(pending);
      return { fleetWide: true };
    } catch (error) {
      this.fail(error);
      return { fleetWide: false, error };
    }
  }

  private async pushAdmin(pending: { target: AdminTarget; reason: CircuitStateChangeReason }): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const { view, current } = await this.command(ADMIN_SCRIPT, [pending.target, pending.reason]);
      // A stale reply means nothing was written (a clock jump on Redis); the estimate is fixed now, try once more.
      if (view.code === 'stale' && attempt === 0) continue;
      if (view.code === 'stale') throw new SharedRedisReplyError(ADMIN_SCRIPT.name, 'stale twice');
      if (this.pendingAdmin === pending) this.pendingAdmin = undefined;
      if (current) this.applyView(view);
      return;
    }
  }

  private startSync(): Promise<void> {
    const run = this.doSync().finally(() => {
      this.syncing = undefined;
    });
    this.syncing = run;
    return run;
  }

  private async doSync(): Promise<void> {
    if (this.syncTimer !== undefined) {
      this.clock.clearTimeout(this.syncTimer);
      this.syncTimer = undefined;
    }
    if (this.closed) return;
    const now = this.clock.now();
    this.lastSyncStart = now;
    const recovering = this.degraded;
    try {
      const pending = this.pendingAdmin;
      if (pending !== undefined) await this.pushAdmin(pending);
      this.window.advance(now);
      const pushWindow = !recovering && this.sharedState === 'CLOSED' && this.sharedGen !== undefined;
      const args = [
        this.instanceId,
        pushWindow ? String(this.sharedGen) : '',
        this.window.calls,
        this.window.failures,
        this.window.slowCalls,
        this.consecutive,
        this.batchTrailing,
        this.batchHadSuccess ? '1' : '0',
      ];
      // A batch is pushed at most once: if the reply is lost, so is the batch (never counted twice).
      this.batchTrailing = 0;
      this.batchHadSuccess = false;
      const { view, current } = await this.command(SYNC_SCRIPT, args);
      if (this.closed) return;
      if (recovering) this.recover(view);
      else if (current) this.applyView(view);
    } catch (error) {
      this.fail(error);
    }
    if (this.degraded) this.scheduleRecovery();
  }

  /** Schedules the next periodic sync while calls keep coming. */
  private touch(now: number): void {
    if (this.syncTimer !== undefined || this.syncing !== undefined || this.closed) return;
    const delay = Math.max(0, this.syncInterval - (now - this.lastSyncStart));
    this.syncTimer = this.clock.setTimeout(() => {
      this.syncTimer = undefined;
      void this.sync();
    }, delay);
  }

  private scheduleRecovery(): void {
    if (this.recoveryTimer !== undefined || this.closed) return;
    this.recoveryTimer = this.clock.setTimeout(() => {
      this.recoveryTimer = undefined;
      void this.sync();
    }, this.syncInterval);
  }

  private fail(error: unknown): void {
    if (this.closed) return;
    if (isPermanentRedisError(error) && !this.warnedPermanent) {
      // Not an outage: a bug, a foreign key, a misconfigured Cluster. Say so loudly, once.
      this.warnedPermanent = true;
      process.emitWarning(`nest-resilience: shared circuit breaker "${this.name}" got a permanent Redis error and decides locally: ${String((error as Error)?.message ?? error)}`, 'SharedCircuitBreakerError');
    }
    if (this.degraded) return;
    // The local breaker holds this instance's outcomes of the current generation: it goes on from them.
    this.degraded = true;
    this.probeAcquiring = false;
    if (this.statusEvents.hasListeners) this.statusEvents.emit({ breaker: this.name, source: 'local', error });
    this.scheduleRecovery();
  }

  private recover(view: View): void {
    const from = this.fallbackState(this.clock.now());
    this.degraded = false;
    this.warnedPermanent = false;
    // Adopted as a change of generation, so this instance starts from the fleet's window.
    this.sharedState = from;
    this.sharedGen = undefined;
    this.applyView(view);
    if (this.statusEvents.hasListeners) this.statusEvents.emit({ breaker: this.name, source: 'redis' });
  }

  private applyView(view: View): void {
    const now = this.clock.now();
    this.syncedAt = now;
    const openUntil = view.state === 'OPEN' ? now + (view.openUntil - view.now) : 0;
    if (view.calls >= 0) {
      this.fleet = { calls: view.calls, failures: view.failures, slowCalls: view.slowCalls, consecutive: view.consecutive, instances: view.instances, votes: view.votes, probes: view.probes };
    } else {
      this.fleet.probes = view.probes;
      this.fleet.consecutive = view.consecutive;
    }
    const from = this.sharedState;
    if (view.gen !== this.sharedGen) {
      this.sharedGen = view.gen;
      this.clearWindow();
      this.resetLocal();
      this.probeDeniedUntil = 0;
    }
    this.sharedState = view.state;
    this.openUntil = openUntil;
    if (from !== view.state) this.emitState(from, view.state, view.reason);
  }

  /** Starts the local fallback afresh, silently: it speaks only while it decides. */
  private resetLocal(): void {
    this.forwardLocalEvents = false;
    this.local.reset();
    this.forwardLocalEvents = true;
  }

  private clearWindow(): void {
    this.window.clear();
    this.consecutive = 0;
    this.batchTrailing = 0;
    this.batchHadSuccess = false;
  }

  private emitState(from: CircuitState, to: CircuitState, reason: CircuitStateChangeReason): void {
    if (this.stateChanges.hasListeners) this.stateChanges.emit({ breaker: this.name, from, to, reason });
  }

  /** Runs one script with the breaker's keys and configuration; `current` is false when a fleet-wide operation superseded the reply. */
  private async command(script: RedisScript, args: ReadonlyArray<string | number>): Promise<{ view: View; current: boolean }> {
    const seq = ++this.commandSeq;
    const reply = await runScript(this.client, script, this.keys, [this.time.deadline(this.commandTimeout), ...this.config, ...args], this.commandTimeout, this.clock);
    const view = parseView(script, reply);
    this.time.observe(view.now);
    return { view, current: seq >= this.viewFloor };
  }
}

function parseView(script: RedisScript, reply: unknown): View {
  if (!Array.isArray(reply) || reply.length !== 14) throw new SharedRedisReplyError(script.name, reply);
  const [code, now, state, gen, openUntil, reason, calls, failures, slowCalls, consecutive, instances, votes, probes, probesSucceeded] = reply as unknown[];
  if (typeof code !== 'string' || typeof state !== 'string' || !STATES.includes(state as CircuitState) || typeof reason !== 'string') {
    throw new SharedRedisReplyError(script.name, reply);
  }
  const numbers = [now, gen, openUntil, calls, failures, slowCalls, consecutive, instances, votes, probes, probesSucceeded];
  if (!numbers.every((value) => typeof value === 'number' && Number.isFinite(value))) throw new SharedRedisReplyError(script.name, reply);
  return {
    code,
    now: now as number,
    state: state as CircuitState,
    gen: gen as number,
    openUntil: openUntil as number,
    reason: reason as CircuitStateChangeReason,
    calls: calls as number,
    failures: failures as number,
    slowCalls: slowCalls as number,
    consecutive: consecutive as number,
    instances: instances as number,
    votes: votes as number,
    probes: probes as number,
    probesSucceeded: probesSucceeded as number,
  };
}
