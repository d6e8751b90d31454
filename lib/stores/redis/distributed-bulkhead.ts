import { randomUUID } from 'node:crypto';
import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { abortReasonOf, NO_CONTEXT, settleOnAbort, type CallContext, type Task } from '../../core/context.js';
import { toMilliseconds, type Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { executeWith, invoke, type Policy } from '../../core/policy.js';
import { enumOption, integerOption, rejectUnknownOptions } from '../../core/validate.js';
import { BulkheadRejectedError, type BulkheadRejectReason } from '../../policies/bulkhead/bulkhead.error.js';
import type { BulkheadStats } from '../../policies/bulkhead/bulkhead.options.js';
import { BulkheadPolicy, DONE, QUEUED, RUNNING, Waiter, type BulkheadQueueEvent, type BulkheadRejectEvent, type ResolvedBulkheadOptions } from '../../policies/bulkhead/bulkhead.policy.js';
import { StoreUnavailableError } from '../store.errors.js';
import {
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_KEY_PREFIX,
  hashTag,
  isPermanentRedisError,
  isScriptingClient,
  RedisScript,
  RedisTimeTracker,
  runScript,
  SharedRedisReplyError,
  type RedisClient,
} from './shared-redis.js';

/** What a {@link DistributedBulkhead} does with a call when Redis cannot answer. */
export type DistributedBulkheadFailurePolicy =
  /** Decide in process with a local bulkhead of `localMaxConcurrent` permits (the fleet may then run up to instances × that). */
  | 'local'
  /** Refuse the call with `StoreUnavailableError` (503 with Retry-After in HTTP). */
  | 'fail-closed'
  /** Run the call without a permit. */
  | 'fail-open';

/** Options of a {@link DistributedBulkhead}. */
export interface DistributedBulkheadOptions {
  /** Name used in events, errors and the Redis keys. @default 'default' */
  name?: string;
  /** Calls running at once across the whole fleet (an integer ≥ 1). @default 10 */
  maxConcurrent?: number;
  /** Calls waiting for a permit in this instance (an integer ≥ 0); beyond it calls are refused at once. @default 0 */
  maxQueue?: number;
  /** How long a call may wait in the queue. @default no limit (the call's deadline still applies) */
  queueTimeout?: Duration;
  /**
   * How long a permit outlives its holder: permits are renewed every third of it while the call
   * runs, and one held by a dead instance returns to the fleet when it expires. @default '10s'
   */
  leaseTtl?: Duration;
  /** How often waiting calls retry when no release notification arrives. @default '100ms' */
  pollInterval?: Duration;
  /**
   * Wake waiting calls through Redis pub/sub when a permit is released: one extra connection (a
   * duplicate of the client), opened when a call first waits and closed 5 s after the last one.
   * @default true
   */
  notifications?: boolean;
  /** What to do with a call when Redis cannot answer. @default 'local' */
  onStoreFailure?: DistributedBulkheadFailurePolicy;
  /** Permits of the local bulkhead used by the `'local'` failure policy. @default maxConcurrent */
  localMaxConcurrent?: number;
}

/** What a {@link DistributedBulkhead} needs besides its options. */
export interface DistributedBulkheadDependencies {
  /** The ioredis client (`Redis` or `Cluster`). Not closed by the bulkhead; its duplicate for notifications is. */
  client: RedisClient;
  /** Prefix of the bulkhead's keys, inside its hash tag. @default 'nest-resilience:' */
  keyPrefix?: string;
  /** Local time: queue timeouts, renewals, polling. Must follow real time. @default systemClock */
  clock?: Clock;
  /** Bound on one Redis round trip. @default 500 ms */
  commandTimeout?: Duration;
  /** This instance's identity, a prefix of its permit ids. @default a random UUID */
  instanceId?: string;
}

/**
 * Emitted when a running call's permit is gone from Redis: it expired (the process stalled past
 * `leaseTtl`, Redis lost it) or could not be renewed before it expired. The call keeps running;
 * the fleet may now admit one call too many until it ends.
 */
export interface LeaseLostEvent {
  /** The bulkhead's name. */
  readonly bulkhead: string;
  /** The permit's id in Redis. */
  readonly permitId: string;
  /** `'expired'`: Redis no longer holds it; `'unreachable'`: Redis did not answer before it expired. */
  readonly reason: 'expired' | 'unreachable';
  /** Milliseconds the call had held the permit. */
  readonly heldForMs: number;
}

/** Emitted when Redis fails and a call is decided by the failure policy. */
export interface DistributedBulkheadStoreErrorEvent {
  /** The bulkhead's name. */
  readonly bulkhead: string;
  /** The failure policy applied. */
  readonly policy: DistributedBulkheadFailurePolicy;
  /** The Redis error. */
  readonly error: unknown;
}

/** A distributed bulkhead's counters (this instance's). */
export interface DistributedBulkheadStats extends BulkheadStats {
  /** Running calls whose permit was lost. */
  leasesLost: number;
  /** Calls decided by the failure policy because Redis failed. */
  storeFailures: number;
}

const KNOWN_OPTIONS = ['name', 'maxConcurrent', 'maxQueue', 'queueTimeout', 'leaseTtl', 'pollInterval', 'notifications', 'onStoreFailure', 'localMaxConcurrent'] as const;

// KEYS[1] permits ZSET: permit id -> expiry (ms, Redis time). Every script reads the clock with TIME.
const EXPIRE_KEY = `
local last = redis.call('ZRANGE', K, -1, -1, 'WITHSCORES')
if last[2] ~= nil then redis.call('PEXPIRE', K, math.max(1, tonumber(last[2]) - now + 1000)) end
`;

/** ARGV: deadline, permit id, max, ttl, channel. Reply {code, now, held, ms until the oldest permit expires}. */
const ACQUIRE_SCRIPT = new RedisScript(
  'bulkhead-acquire',
  `
local K = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = tonumber(ARGV[1])
if deadline > 0 and now > deadline then return {'stale', now, -1, 0} end
local expired = redis.call('ZREMRANGEBYSCORE', K, '-inf', string.format('%.0f', now))
local n = redis.call('ZCARD', K)
local max = tonumber(ARGV[3])
if n < max then
  redis.call('ZADD', K, string.format('%.0f', now + tonumber(ARGV[4])), ARGV[2])
  ${EXPIRE_KEY}
  if expired > 0 and n + 1 < max then redis.call('PUBLISH', ARGV[5], 'expired') end
  return {'granted', now, n + 1, 0}
end
local first = redis.call('ZRANGE', K, 0, 0, 'WITHSCORES')
return {'full', now, n, tonumber(first[2]) - now}
`,
);

/** ARGV: permit id, channel. Reply 1 when the permit was held. */
const RELEASE_SCRIPT = new RedisScript(
  'bulkhead-release',
  `
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', ARGV[2], 'released') end
return removed
`,
);

/** ARGV: permit id, ttl. Reply {1 renewed | 0 gone, now}. */
const RENEW_SCRIPT = new RedisScript(
  'bulkhead-renew',
  `
local K = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', K, ARGV[1])
if not score then return {0, now} end
if tonumber(score) <= now then
  redis.call('ZREM', K, ARGV[1])
  return {0, now}
end
redis.call('ZADD', K, 'XX', string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
${EXPIRE_KEY}
return {1, now}
`,
);

/** Reply: permits held (unexpired) fleet-wide. */
const COUNT_SCRIPT = new RedisScript(
  'bulkhead-count',
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
`,
);

/** The notification connection closes after this long without a waiting call. */
const IDLE_UNSUBSCRIBE_MS = 5_000;

interface Lease {
  readonly permitId: string;
  readonly acquiredAt: number;
  expiresAt: number;
  timer: TimerHandle | undefined;
  done: boolean;
}

interface Subscriber {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  subscribe(channel: string): Promise<unknown>;
  disconnect(): void;
}

type AcquireResult = { granted: true; permitId: string } | { granted: false; retryInMs: number; held: number };

/**
 * A bulkhead whose cap holds across the whole fleet: at most `maxConcurrent` calls to one
 * downstream run at once, whichever instance runs them.
 *
 * Each permit is a lease in Redis (a member of a sorted set scored by its expiry in Redis `TIME`),
 * taken and returned by Lua scripts, so the cap is atomic across processes and immune to clock
 * skew. A running call renews its lease every third of `leaseTtl` (one timer per running call,
 * cleared when it settles); a process that dies holding permits loses them when they expire. A
 * lease found gone on renewal emits {@link onLeaseLost} (a typed event, never a rejection) and the
 * call keeps running. Permits are returned when the call settles (success, throw, synchronous
 * throw, abort), and a waiter that gave up never keeps one.
 *
 * Calls that find the fleet full wait in this instance's queue (`maxQueue`, `queueTimeout`,
 * abortable through the call's context), first in, first out locally; they retry when a permit
 * is released anywhere (pub/sub), or every `pollInterval`. Fairness across instances is not
 * guaranteed. Beyond the queue, calls are refused with {@link BulkheadRejectedError}.
 *
 * Every round trip is bounded by `commandTimeout`; a client that is reconnecting fails at once.
 * When Redis cannot answer, `onStoreFailure` decides (`'local'` by default) and Redis is retried
 * after a short pause. A permanent error (a script error, `CROSSSLOT`, `WRONGTYPE`) is not an
 * outage: the call is refused with it, and a process warning names it. A permit request whose reply was lost is returned at once (and an
 * acquisition replayed by ioredis after a reconnect is dropped as stale), so an outage leaks no
 * permit for longer than `leaseTtl`.
 *
 * @example
 * const bulkhead = new DistributedBulkhead({ name: 'pricing', maxConcurrent: 10, maxQueue: 50, queueTimeout: '2s' }, { client: redis });
 * const quote = await bulkhead.execute(() => pricing.quote(sku));
 */
export class DistributedBulkhead implements Policy {
  /** The bulkhead's name. */
  readonly name: string;
  /** Calls running at once across the fleet. */
  readonly maxConcurrent: number;
  /** The resolved options common to every bulkhead (`maxQueue` and `queueTimeout` are per instance). */
  readonly options: ResolvedBulkheadOptions;
  /** Subscribes to refusals: full, queue timeout, closed. */
  readonly onReject: Event<BulkheadRejectEvent>;
  /** Subscribes to calls entering this instance's queue (`active` is this instance's running calls). */
  readonly onQueue: Event<BulkheadQueueEvent>;
  /** Subscribes to lost leases. */
  readonly onLeaseLost: Event<LeaseLostEvent>;
  /** Subscribes to calls decided by the failure policy. */
  readonly onStoreError: Event<DistributedBulkheadStoreErrorEvent>;

  private readonly client: RedisClient;
  private readonly clock: Clock;
  private readonly key: string;
  private readonly channel: string;
  private readonly instanceId: string;
  private readonly maxQueue: number;
  private readonly queueTimeout: number | undefined;
  private readonly leaseTtl: number;
  private readonly renewEvery: number;
  private readonly pollInterval: number;
  private readonly notifications: boolean;
  private readonly failurePolicy: DistributedBulkheadFailurePolicy;
  private readonly commandTimeout: number;
  private readonly pauseAfterFailure: number;
  private readonly time: RedisTimeTracker;
  private readonly local: BulkheadPolicy;

  private readonly queue = new Set<Waiter>();
  private active = 0;
  private rejectedCount = 0;
  private timedOutCount = 0;
  private abortedCount = 0;
  private lostCount = 0;
  private storeFailureCount = 0;
  private permitSeq = 0;
  private closed = false;
  private unavailableUntil = -Infinity;
  private pumping = false;
  private pumpAgain = false;
  private wakeTimer: TimerHandle | undefined = undefined;
  private wakeAt = Infinity;
  private subscriber: Subscriber | undefined = undefined;
  private idleTimer: TimerHandle | undefined = undefined;
  private warnedPermanent = false;

  private readonly rejectSource = new EventSource<BulkheadRejectEvent>();
  private readonly queueSource = new EventSource<BulkheadQueueEvent>();
  private readonly leaseLostSource = new EventSource<LeaseLostEvent>();
  private readonly storeErrorSource = new EventSource<DistributedBulkheadStoreErrorEvent>();

  /**
   * @throws InvalidOptionError when an option is unknown or out of range.
   */
  constructor(options: DistributedBulkheadOptions, dependencies: DistributedBulkheadDependencies) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('bulkhead', options, 'an options object');
    if (typeof dependencies !== 'object' || dependencies === null) throw new InvalidOptionError('dependencies', dependencies, '{ client, keyPrefix?, clock?, commandTimeout?, instanceId? }');
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    const name = options.name ?? 'default';
    if (typeof name !== 'string' || name === '') throw new InvalidOptionError('name', name, 'a non-empty string');
    this.name = name;
    this.maxConcurrent = integerOption(options.maxConcurrent, 'maxConcurrent', 10, 1);
    this.maxQueue = integerOption(options.maxQueue, 'maxQueue', 0, 0);
    this.queueTimeout = options.queueTimeout === undefined ? undefined : toMilliseconds(options.queueTimeout, 'queueTimeout', { timer: true });
    this.leaseTtl = toMilliseconds(options.leaseTtl ?? 10_000, 'leaseTtl', { allowZero: false, timer: true });
    if (this.leaseTtl < 30) throw new InvalidOptionError('leaseTtl', options.leaseTtl, 'a duration ≥ 30 ms (a lease is renewed every third of it)');
    this.renewEvery = Math.floor(this.leaseTtl / 3);
    this.pollInterval = toMilliseconds(options.pollInterval ?? 100, 'pollInterval', { allowZero: false, timer: true });
    if (options.notifications !== undefined && typeof options.notifications !== 'boolean') throw new InvalidOptionError('notifications', options.notifications, 'a boolean');
    this.notifications = options.notifications ?? true;
    this.failurePolicy = enumOption<DistributedBulkheadFailurePolicy>(options.onStoreFailure, 'onStoreFailure', 'local', ['local', 'fail-closed', 'fail-open']);
    this.options = Object.freeze({ name: this.name, maxConcurrent: this.maxConcurrent, maxQueue: this.maxQueue, queueTimeout: this.queueTimeout });
    const localMaxConcurrent = integerOption(options.localMaxConcurrent, 'localMaxConcurrent', this.maxConcurrent, 1);

    if (!isScriptingClient(dependencies.client)) throw new InvalidOptionError('client', dependencies.client, 'an ioredis Redis or Cluster instance');
    this.client = dependencies.client;
    this.clock = dependencies.clock ?? systemClock;
    const keyPrefix = dependencies.keyPrefix ?? DEFAULT_KEY_PREFIX;
    if (typeof keyPrefix !== 'string') throw new InvalidOptionError('keyPrefix', keyPrefix, 'a string');
    const instanceId = dependencies.instanceId ?? randomUUID();
    if (typeof instanceId !== 'string' || instanceId === '') throw new InvalidOptionError('instanceId', instanceId, 'a non-empty string');
    this.instanceId = instanceId;
    this.commandTimeout = toMilliseconds(dependencies.commandTimeout ?? DEFAULT_COMMAND_TIMEOUT_MS, 'commandTimeout', { allowZero: false, timer: true });
    this.pauseAfterFailure = Math.max(this.pollInterval, 250);
    this.time = new RedisTimeTracker(this.clock);
    const tag = hashTag(keyPrefix, 'bulkhead', name);
    this.key = `${tag}:permits`;
    this.channel = `${tag}:released`;
    this.local = new BulkheadPolicy(
      { name, maxConcurrent: localMaxConcurrent, maxQueue: this.maxQueue, ...(this.queueTimeout === undefined ? {} : { queueTimeout: this.queueTimeout }) },
      { clock: this.clock },
    );
    this.onReject = this.rejectSource.event;
    this.onQueue = this.queueSource.event;
    this.onLeaseLost = this.leaseLostSource.event;
    this.onStoreError = this.storeErrorSource.event;
  }

  /** Runs `fn` under the bulkhead; see {@link Policy.execute}. */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((resolved) => this.run(fn, resolved), context);
  }

  /**
   * Runs `fn` once the fleet has a free permit: at once, after waiting in this instance's queue,
   * or never (refused with {@link BulkheadRejectedError}).
   */
  run<T>(fn: Task<T>, context: CallContext | undefined): Promise<T> {
    const ctx = context ?? NO_CONTEXT;
    if (ctx.aborted) return Promise.reject(abortReasonOf(ctx.abortReason));
    if (this.closed) return this.refuse('closed');
    if (this.clock.now() < this.unavailableUntil) return this.decideWithoutRedis(fn, ctx, new StoreUnavailableError('redis', this.unavailableUntil - this.clock.now()));
    // Behind local waiters: first in, first out.
    if (this.queue.size > 0) return this.enqueueOrRefuse(fn, ctx);
    return this.acquire().then(
      (result): Promise<T> => {
        if (result.granted) {
          if (ctx.aborted || this.closed) {
            this.releasePermit(result.permitId);
            return ctx.aborted ? Promise.reject(abortReasonOf(ctx.abortReason)) : this.refuse('closed');
          }
          const running = this.runHolding(result.permitId, fn, ctx);
          return ctx === NO_CONTEXT || ctx.deadline !== Infinity ? running : settleOnAbort(running, ctx);
        }
        if (ctx.aborted) return Promise.reject(abortReasonOf(ctx.abortReason));
        return this.enqueueOrRefuse(fn, ctx, result.held);
      },
      (error: unknown) => (isPermanentRedisError(error) ? this.failLoudly(error) : this.decideWithoutRedis(fn, ctx, error)),
    );
  }

  /** This instance's counters. */
  stats(): DistributedBulkheadStats {
    return {
      active: this.active,
      queued: this.queue.size,
      rejected: this.rejectedCount,
      timedOut: this.timedOutCount,
      aborted: this.abortedCount,
      leasesLost: this.lostCount,
      storeFailures: this.storeFailureCount,
    };
  }

  /** Permits held right now across the fleet (unexpired leases), read from Redis. */
  async fleetActive(): Promise<number> {
    const reply = await runScript(this.client, COUNT_SCRIPT, [this.key], [], this.commandTimeout, this.clock);
    if (typeof reply !== 'number') throw new SharedRedisReplyError(COUNT_SCRIPT.name, reply);
    return reply;
  }

  /**
   * Refuses queued and later calls with a `'closed'` {@link BulkheadRejectedError} and closes the
   * notification connection. Running calls finish normally and return their permits. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.local.close();
    this.clearWake();
    if (this.idleTimer !== undefined) {
      this.clock.clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    const error = new BulkheadRejectedError(this.name, 'closed', this.active, this.queue.size);
    // Deleting the visited entry of a Set during for…of is well defined.
    for (const waiter of this.queue) {
      this.leaveQueue(waiter);
      waiter.reject(error);
    }
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    subscriber?.disconnect();
  }

  private async acquire(): Promise<AcquireResult> {
    for (let attempt = 0; ; attempt++) {
      const permitId = `${this.instanceId}#${++this.permitSeq}`;
      let reply: unknown;
      try {
        reply = await this.script(ACQUIRE_SCRIPT, [this.time.deadline(this.commandTimeout), permitId, this.maxConcurrent, this.leaseTtl, this.channel]);
      } catch (error) {
        // The request may have been applied with its reply lost, or may still be applied if ioredis
        // replays it: return the permit. Sent on the same connection, so it runs after the request.
        this.releasePermit(permitId);
        throw error;
      }
      if (!Array.isArray(reply) || reply.length !== 4 || typeof reply[0] !== 'string' || typeof reply[1] !== 'number') throw new SharedRedisReplyError(ACQUIRE_SCRIPT.name, reply);
      this.time.observe(reply[1]);
      const [code, , held, retryInMs] = reply as [string, number, number, number];
      if (code === 'granted') return { granted: true, permitId };
      if (code === 'full') return { granted: false, retryInMs: Math.max(1, retryInMs), held };
      // 'stale': nothing was written (a clock jump on Redis); the estimate is fixed now, try once more.
      if (code !== 'stale' || attempt > 0) throw new SharedRedisReplyError(ACQUIRE_SCRIPT.name, reply);
    }
  }

  private script(script: RedisScript, args: ReadonlyArray<string | number>): Promise<unknown> {
    return runScript(this.client, script, [this.key], args, this.commandTimeout, this.clock);
  }

  /** Returns a permit; a failure only delays it until the lease expires. */
  private releasePermit(permitId: string): void {
    this.script(RELEASE_SCRIPT, [permitId, this.channel]).catch(() => {});
  }

  /** Calls `fn` holding `permitId`, renewing its lease until `fn` settles, then returns it. */
  private runHolding<T>(permitId: string, fn: Task<T>, context: CallContext): Promise<T> {
    this.active++;
    const now = this.clock.now();
    const lease: Lease = { permitId, acquiredAt: now, expiresAt: now + this.leaseTtl, timer: undefined, done: false };
    lease.timer = this.clock.setTimeout(() => this.renew(lease), this.renewEvery);
    let result: PromiseLike<T> | T;
    try {
      result = fn(context);
    } catch (error) {
      this.finish(lease);
      return Promise.reject(error);
    }
    return Promise.resolve(result).then(
      (value) => {
        this.finish(lease);
        return value;
      },
      (error: unknown) => {
        this.finish(lease);
        throw error;
      },
    );
  }

  private finish(lease: Lease): void {
    lease.done = true;
    if (lease.timer !== undefined) {
      this.clock.clearTimeout(lease.timer);
      lease.timer = undefined;
    }
    this.active--;
    this.releasePermit(lease.permitId);
    // The release runs first on the connection, so a local waiter can take the permit at once.
    if (this.queue.size > 0) this.pump();
  }

  private renew(lease: Lease): void {
    lease.timer = undefined;
    if (lease.done) return;
    this.script(RENEW_SCRIPT, [lease.permitId, this.leaseTtl]).then(
      (reply) => {
        if (lease.done) return;
        if (!Array.isArray(reply) || typeof reply[0] !== 'number' || typeof reply[1] !== 'number') {
          this.renewFailed(lease, new SharedRedisReplyError(RENEW_SCRIPT.name, reply));
          return;
        }
        this.time.observe(reply[1]);
        if (reply[0] === 1) {
          lease.expiresAt = this.clock.now() + this.leaseTtl;
          lease.timer = this.clock.setTimeout(() => this.renew(lease), this.renewEvery);
        } else {
          this.loseLease(lease, 'expired');
        }
      },
      (error: unknown) => {
        if (!lease.done) this.renewFailed(lease, error);
      },
    );
  }

  private renewFailed(lease: Lease, error: unknown): void {
    this.warnIfPermanent(error);
    const left = lease.expiresAt - this.clock.now();
    if (left <= 0) {
      this.loseLease(lease, 'unreachable');
      return;
    }
    // Try again before it expires.
    lease.timer = this.clock.setTimeout(() => this.renew(lease), Math.max(1, Math.min(this.renewEvery, Math.floor(left / 2))));
  }

  private loseLease(lease: Lease, reason: LeaseLostEvent['reason']): void {
    this.lostCount++;
    if (this.leaseLostSource.hasListeners) {
      this.leaseLostSource.emit({ bulkhead: this.name, permitId: lease.permitId, reason, heldForMs: this.clock.now() - lease.acquiredAt });
    }
  }

  private enqueueOrRefuse<T>(fn: Task<T>, context: CallContext, fleetHeld = this.maxConcurrent): Promise<T> {
    if (this.queue.size >= this.maxQueue) return this.refuse('full', fleetHeld);
    return new Promise<T>((resolve, reject) => {
      const waiter = new Waiter<T>(fn, context, resolve, reject) as Waiter;
      this.queue.add(waiter);
      if (this.queueTimeout !== undefined) waiter.timer = this.clock.setTimeout(() => this.expire(waiter), this.queueTimeout);
      if (context !== NO_CONTEXT) waiter.removeAbortListener = context.onAbort((reason) => this.abandon(waiter, reason));
      this.subscribe();
      this.scheduleWake(this.pollInterval);
      if (this.queueSource.hasListeners) this.queueSource.emit({ bulkhead: this.name, active: this.active, queued: this.queue.size });
    });
  }

  private expire(waiter: Waiter): void {
    waiter.timer = undefined;
    if (waiter.state !== QUEUED) return;
    this.leaveQueue(waiter);
    this.timedOutCount++;
    if (this.rejectSource.hasListeners) this.rejectSource.emit({ bulkhead: this.name, reason: 'queue-timeout', active: this.active, queued: this.queue.size });
    waiter.reject(new BulkheadRejectedError(this.name, 'queue-timeout', this.active, this.queue.size));
  }

  private abandon(waiter: Waiter, reason: unknown): void {
    waiter.removeAbortListener = undefined;
    if (waiter.state === QUEUED) {
      this.leaveQueue(waiter);
      this.abortedCount++;
    } else if (waiter.state !== RUNNING || waiter.context.deadline !== Infinity) {
      // Done already, or running under a deadline: the TimeoutPolicy owning it settles the caller.
      return;
    }
    waiter.reject(abortReasonOf(reason));
  }

  private leaveQueue(waiter: Waiter): void {
    this.queue.delete(waiter);
    waiter.state = DONE;
    if (waiter.timer !== undefined) {
      this.clock.clearTimeout(waiter.timer);
      waiter.timer = undefined;
    }
    const remove = waiter.removeAbortListener;
    if (remove !== undefined) {
      waiter.removeAbortListener = undefined;
      remove();
    }
    if (this.queue.size === 0) {
      this.clearWake();
      this.scheduleIdleUnsubscribe();
    }
  }

  /** Closes the notification connection once nobody has waited for a while: no connection outlives its use. */
  private scheduleIdleUnsubscribe(): void {
    if (this.subscriber === undefined || this.idleTimer !== undefined) return;
    this.idleTimer = this.clock.setTimeout(() => {
      this.idleTimer = undefined;
      if (this.queue.size > 0) return;
      const subscriber = this.subscriber;
      this.subscriber = undefined;
      subscriber?.disconnect();
    }, IDLE_UNSUBSCRIBE_MS);
  }

  /** Hands permits to local waiters, oldest first, until the fleet is full. One request in flight at a time. */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    this.pumpAgain = false;
    this.pumpLoop().then(
      () => {
        this.pumping = false;
      },
      () => {
        this.pumping = false;
      },
    );
  }

  private async pumpLoop(): Promise<void> {
    while (!this.closed) {
      const waiter = this.queue.values().next().value;
      if (waiter === undefined) return;
      if (this.clock.now() < this.unavailableUntil) {
        this.drainWithoutRedis(new StoreUnavailableError('redis', this.unavailableUntil - this.clock.now()));
        return;
      }
      let result: AcquireResult;
      try {
        result = await this.acquire();
      } catch (error) {
        if (isPermanentRedisError(error)) {
          this.leaveQueue(waiter);
          waiter.scope.runInAsyncScope(() => this.failLoudly(error).catch(waiter.reject));
          continue;
        }
        this.drainWithoutRedis(error);
        return;
      }
      if (result.granted) {
        // The waiter may have given up (timeout, abort) during the round trip: it never keeps a permit.
        if (waiter.state !== QUEUED || this.closed) {
          this.releasePermit(result.permitId);
          continue;
        }
        this.leaveQueue(waiter);
        waiter.state = RUNNING;
        waiter.scope.runInAsyncScope(this.startWaiter, this, waiter, result.permitId);
        continue;
      }
      this.scheduleWake(Math.min(this.pollInterval, result.retryInMs));
      // A release notified during the request may have been missed by it: ask again at once.
      if (!this.pumpAgain) return;
      this.pumpAgain = false;
    }
  }

  private startWaiter(waiter: Waiter, permitId: string): void {
    if (waiter.context !== NO_CONTEXT && waiter.context.deadline === Infinity) {
      waiter.removeAbortListener = waiter.context.onAbort((reason) => this.abandon(waiter, reason));
    }
    this.runHolding(permitId, waiter.fn, waiter.context).then(
      (value) => {
        waiter.state = DONE;
        waiter.removeAbortListener?.();
        waiter.resolve(value);
      },
      (error: unknown) => {
        waiter.state = DONE;
        waiter.removeAbortListener?.();
        waiter.reject(error);
      },
    );
  }

  private scheduleWake(ms: number): void {
    const at = this.clock.now() + ms;
    if (this.wakeTimer !== undefined && this.wakeAt <= at) return;
    this.clearWake();
    this.wakeAt = at;
    this.wakeTimer = this.clock.setTimeout(() => {
      this.wakeTimer = undefined;
      this.wakeAt = Infinity;
      if (this.queue.size > 0) {
        this.pump();
        // Polled while anyone waits, notification or not.
        if (this.wakeTimer === undefined) this.scheduleWake(this.pollInterval);
      }
    }, ms);
  }

  private clearWake(): void {
    if (this.wakeTimer !== undefined) {
      this.clock.clearTimeout(this.wakeTimer);
      this.wakeTimer = undefined;
      this.wakeAt = Infinity;
    }
  }

  /** Opens the notification connection on first wait; its failures only leave waiters to polling. */
  private subscribe(): void {
    if (this.idleTimer !== undefined) {
      this.clock.clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    if (!this.notifications || this.subscriber !== undefined || this.closed) return;
    const duplicate = (this.client as unknown as { duplicate?: () => Subscriber }).duplicate;
    if (typeof duplicate !== 'function') return;
    let subscriber: Subscriber;
    try {
      subscriber = duplicate.call(this.client);
    } catch {
      return;
    }
    this.subscriber = subscriber;
    subscriber.on('error', () => {});
    subscriber.on('message', (channel) => {
      if (channel === this.channel && this.queue.size > 0) this.pump();
    });
    subscriber.subscribe(this.channel).catch(() => {});
  }

  /** Redis failed: this call is decided by the failure policy, and Redis is left alone for a short pause. */
  private decideWithoutRedis<T>(fn: Task<T>, context: CallContext, error: unknown): Promise<T> {
    this.noteFailure(error);
    switch (this.failurePolicy) {
      case 'fail-closed':
        return Promise.reject(error instanceof StoreUnavailableError ? error : new StoreUnavailableError('redis', this.pauseAfterFailure, error));
      case 'fail-open':
        return invoke(fn, context);
      default:
        return this.local.run(fn, context);
    }
  }

  private drainWithoutRedis(error: unknown): void {
    // Deleting the visited entry of a Set during for…of is well defined.
    for (const waiter of this.queue) {
      this.leaveQueue(waiter);
      waiter.state = RUNNING;
      waiter.scope.runInAsyncScope(() => this.decideWithoutRedis(waiter.fn, waiter.context, error).then(waiter.resolve, waiter.reject));
    }
  }

  /** A permanent error (a script error, CROSSSLOT, WRONGTYPE) is not an outage: the call fails with it. */
  private failLoudly(error: unknown): Promise<never> {
    this.warnIfPermanent(error);
    return Promise.reject(error);
  }

  private noteFailure(error: unknown): void {
    this.storeFailureCount++;
    if (!(error instanceof StoreUnavailableError)) this.unavailableUntil = this.clock.now() + this.pauseAfterFailure;
    if (this.storeErrorSource.hasListeners) this.storeErrorSource.emit({ bulkhead: this.name, policy: this.failurePolicy, error });
  }

  private warnIfPermanent(error: unknown): void {
    if (this.warnedPermanent || !isPermanentRedisError(error)) return;
    this.warnedPermanent = true;
    process.emitWarning(`nest-resilience: distributed bulkhead "${this.name}" got a permanent Redis error: ${String((error as Error)?.message ?? error)}`, 'DistributedBulkheadError');
  }

  private refuse(reason: BulkheadRejectReason, fleetHeld = this.active): Promise<never> {
    if (reason === 'full') this.rejectedCount++;
    const error = new BulkheadRejectedError(this.name, reason, fleetHeld, this.queue.size);
    if (this.rejectSource.hasListeners) this.rejectSource.emit({ bulkhead: this.name, reason, active: fleetHeld, queued: this.queue.size });
    return Promise.reject(error);
  }
}

