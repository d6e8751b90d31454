import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { ReplyError, type Cluster, type Redis, type RedisOptions } from 'ioredis';
import { toMilliseconds, type Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { enumOption, functionOption, integerOption, rejectUnknownOptions } from '../../core/validate.js';
import type { LimitState, RateLimitDecision, StoreFailurePolicy } from '../../policies/rate-limit/rate-limit.options.js';
import { MemoryStore } from '../memory/memory.store.js';
import { StoreUnavailableError } from '../store.errors.js';
import type { Clock } from '../../core/clock.js';
import type { ConsumeMode, DistributedBulkheadSettings, LimitSpec, ResilienceStore, SharedCircuitBreakerSettings } from '../store.interface.js';
import { DistributedBulkhead } from './distributed-bulkhead.js';
import { RedisRetryBudget } from './retry-budget.js';
import type { RetryBudgetOptions } from '../../policies/retry/retry-budget.js';
import { SharedCircuitBreaker } from './shared-circuit-breaker.js';
import { ALGORITHM_CODES, RATE_LIMIT_SCRIPT } from './rate-limit.lua.js';
import {
  clientKeyPrefix,
  command,
  createOwnedClient,
  DeadlineQueue,
  isRedisClient,
  keySlot,
  sendBounded,
  StoreCommand,
  TIMED_OUT,
  type RedisClient,
  type RedisClusterConnection,
} from './redis-client.js';

/** Options of a {@link RedisStore}. Give exactly one of `client`, `url` (with or without `redis`), `redis` or `cluster`. */
export interface RedisStoreOptions {
  /**
   * An ioredis `Redis` (standalone or Sentinel) or `Cluster` instance of your own. The store never
   * closes it and never waits in its offline queue: while it is not `ready`, decisions go to the
   * failure policy at once. A client still in `wait` (built with `lazyConnect`) is connected on
   * first use.
   */
  client?: RedisClient;
  /** A Redis URL (`redis://…`, `rediss://…`); the store creates, owns and closes the client. */
  url?: string;
  /**
   * ioredis options (with `url`, or alone: host, port, Sentinel settings…); the store creates, owns
   * and closes the client. The store always sets `lazyConnect: true`, `enableOfflineQueue: false`,
   * `autoResendUnfulfilledCommands: false` and `maxRetriesPerRequest: 0`: a decision never waits
   * for a reconnection and is never re-sent after one.
   */
  redis?: RedisOptions;
  /** A Redis Cluster: startup nodes and ioredis Cluster options; the store creates, owns and closes the client. */
  cluster?: RedisClusterConnection;
  /**
   * Prefix of every key, inside the hash tag: keys read `{<keyPrefix><key>}:<limit name>`. No `{`
   * or `}`.
   * @default 'nr:'
   */
  keyPrefix?: string;
  /**
   * The longest a decision waits for Redis, from the call to the answer (connection wait and a
   * script reload included). Past it the failure policy decides. A command given up on may still
   * be applied by Redis later (its outcome is unknown); it is never re-sent.
   * @default 100 (milliseconds)
   */
  commandTimeout?: Duration;
  /**
   * What a decision does when Redis cannot answer (down, too slow, out of memory, loading, busy):
   * `'fail-open'` admits and counts the incident (`degraded: 'fail-open'`), `'fail-closed'`
   * rejects with {@link StoreUnavailableError} (503 in HTTP, never 429), `'local'` decides with an
   * in-process limiter of the same settings (`degraded: 'local'`) until Redis answers again.
   * A rate limiter's own `onStoreError` wins over it. Permanent errors (a script error,
   * `CROSSSLOT`, `WRONGTYPE`) are never a failure: they are thrown.
   * @default 'fail-open'
   */
  onFailure?: StoreFailurePolicy;
  /**
   * Hot keys: once a key is refused until time T, later calls of the same or a higher cost for it
   * are refused in process until T, without a round trip. `true` holds at most 10,000 keys.
   * A refund or reset of the key through this store clears its entry; one made by another
   * process does not (its calls stay refused until T).
   * @default false
   */
  blockCache?: boolean | { maxKeys?: number };
  /**
   * `'local'` failure policy: the most keys the in-process limiter holds.
   * @default 10_000
   */
  localMaxKeys?: number;
  /** Where warnings go (the eviction-policy warning). @default `process.emitWarning` */
  logger?: (message: string) => void;
}

/** Why a decision could not be made by Redis. */
export type RedisFailureKind =
  /** The client was not connected (or Redis was known to be down): no round trip was tried. */
  | 'offline'
  /** No answer within `commandTimeout`. */
  | 'timeout'
  /** The connection was lost or refused with the command in flight. */
  | 'connection'
  /** Redis refused the write: `OOM command not allowed` (maxmemory reached under `noeviction`). */
  | 'oom'
  /** Redis was running another script (`BUSY`). */
  | 'busy'
  /** Redis was loading its data set (`LOADING`). */
  | 'loading'
  /** A Cluster in transition: `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, redirections. */
  | 'cluster'
  /** The store was closed. */
  | 'closed';

/** Emitted for every decision the failure policy made instead of Redis. */
export interface RedisStoreFailureEvent {
  /** Why Redis did not decide. */
  readonly kind: RedisFailureKind;
  /** What decided instead. */
  readonly policy: StoreFailurePolicy;
  /** The key of the decision. */
  readonly key: string;
  /** The error met, when a command was tried. */
  readonly error: unknown;
}

/** Counters of a {@link RedisStore} since it was built. */
export interface RedisStoreStats {
  /** Decisions answered by Redis. */
  decisions: number;
  /** Decisions answered by the block cache without a round trip. */
  blocked: number;
  /** Decisions admitted by `'fail-open'` (also refunds that could not reach Redis). */
  failOpen: number;
  /** Decisions made by the in-process limiter (`'local'`). */
  local: number;
  /** Decisions refused with `StoreUnavailableError` (`'fail-closed'`). */
  failClosed: number;
  /** Decisions the failure policy made, by cause. */
  failures: Record<RedisFailureKind, number>;
  /** Permanent errors thrown to callers (script errors, `CROSSSLOT`, `WRONGTYPE`…). */
  permanentErrors: number;
  /** `NOSCRIPT` answers recovered by sending the script again (after a restart, a failover, `SCRIPT FLUSH`). */
  scriptReloads: number;
  /** Whether the last command reached Redis (decisions go to Redis, not to the failure policy). */
  available: boolean;
}

/** How long a `'fail-closed'` refusal asks the caller to wait (`Retry-After: 1`). */
const FAIL_CLOSED_RETRY_AFTER_MS = 1_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 100;
const DEFAULT_BLOCK_CACHE_KEYS = 10_000;
const KNOWN_OPTIONS = ['client', 'url', 'redis', 'cluster', 'keyPrefix', 'commandTimeout', 'onFailure', 'blockCache', 'localMaxKeys', 'logger'] as const;
const FAILURE_POLICIES: readonly StoreFailurePolicy[] = ['fail-open', 'fail-closed', 'local'];
const REPLAY_REFUSED = 'The connection closed with the decision in flight; it was not sent again';
const SCRIPT_SHA = createHash('sha1').update(RATE_LIMIT_SCRIPT).digest('hex');
const TRANSIENT_REPLIES: Readonly<Record<string, RedisFailureKind>> = {
  OOM: 'oom',
  BUSY: 'busy',
  LOADING: 'loading',
  TRYAGAIN: 'cluster',
  CLUSTERDOWN: 'cluster',
  MASTERDOWN: 'cluster',
  READONLY: 'cluster',
  MOVED: 'cluster',
  ASK: 'cluster',
};

/**
 * Test hooks, unreachable from the package's entry points: a clock that replaces Redis `TIME` in
 * the script (so a test can replay a sequence at chosen times), and a listener of raw replies.
 * @internal
 */
export const SCRIPT_CLOCK: unique symbol = Symbol('nest-resilience.redis.scriptClock');
/** A listener of every script reply (tests only; see {@link SCRIPT_CLOCK}). @internal */
export const SCRIPT_REPLY: unique symbol = Symbol('nest-resilience.redis.scriptReply');

/** What the script's arguments hold for one `limits` array, built on its first use. */
interface ScriptLayout {
  /** The number of limits, as an argument. */
  readonly count: string;
  /** Per limit: its code, limit, window and burst, as arguments. */
  readonly limitArguments: readonly string[];
  /** `:<limit name>` per limit, appended to a decision's hash tag. */
  readonly suffixes: readonly string[];
}

/** Layouts by `limits` array: a rate limiter passes the same array on every call. */
const scriptLayouts = new WeakMap<readonly LimitSpec[], ScriptLayout>();

const MODE_CODES: Readonly<Record<ConsumeMode, string>> = { consume: 'c', peek: 'p', refund: 'r' };

/**
 * The most keys (decisions × limits) in one script call: 64 one-limit decisions take about a third
 * of a millisecond of Redis, during which it runs no other command. Measured per decision (token
 * bucket): 73k instructions in Redis alone, 39k in batches of 8, 34k of 32; past that, little less.
 */
const MAX_BATCH_KEYS = 64;

function scriptLayout(limits: readonly LimitSpec[]): ScriptLayout {
  const limitArguments: string[] = [];
  for (const spec of limits) limitArguments.push(ALGORITHM_CODES[spec.algorithm], String(spec.limit), String(spec.windowMs), String(spec.burst));
  return { count: String(limits.length), limitArguments, suffixes: limits.map((spec) => `:${spec.name}`) };
}

/** A decision waiting in a batch for Redis's answer. */
interface QueuedDecision {
  readonly key: string;
  readonly cost: number;
  readonly nowMs: number;
  readonly policy: StoreFailurePolicy;
  readonly probe: boolean;
  resolve(decision: RateLimitDecision | PromiseLike<RateLimitDecision>): void;
  reject(error: unknown): void;
}

/** Decisions sent in one script call: the same `limits` and mode. */
interface Batch {
  readonly limits: readonly LimitSpec[];
  readonly layout: ScriptLayout;
  readonly mode: ConsumeMode;
  /** Set when the decision already waited: it goes alone, by then (`performance.now()` clock). */
  readonly deadline: number | undefined;
  /** Every decision's keys, in order. */
  readonly keys: string[];
  readonly costs: string[];
  readonly decisions: QueuedDecision[];
  sent: boolean;
}

interface Block {
  readonly until: number;
  readonly cost: number;
  readonly since: number;
  readonly limits: readonly LimitSpec[];
  readonly states: readonly LimitState[];
}

/** What a test's reply listener receives: the decision and the script's clock. */
export interface ScriptReply {
  /** Whether the decision admitted the call. */
  readonly allowed: boolean;
  /** The script's clock (Redis `TIME`, or the test clock) in milliseconds. */
  readonly nowMs: number;
}

/**
 * The Redis store: rate-limit state shared by every process pointing at the same Redis, through
 * ioredis (an optional peer dependency, imported only by the `nest-resilience/redis` entry point).
 *
 * - A decision is an atomic Lua script (`EVALSHA`): every limit of a call is checked and, when
 *   all pass, charged in the same step (a refused call consumes none). The decisions a process
 *   makes in one turn of the event loop with the same limits travel in one script call (up to 64 keys; in a
 *   Cluster, one per call), each decided on its own, one after the other. The arithmetic is the
 *   memory store's (the two give the same decisions for the same sequence); the clock is Redis
 *   `TIME`, so processes with skewed clocks agree; keys expire on their own when their limit is
 *   full again.
 * - Keys share a hash tag (`{<keyPrefix><key>}:<limit name>`): every key of one decision lands
 *   in one Cluster slot. `%`, `{` and `}` in a key are escaped (`%25`, `%7B`, `%7D`).
 * - The script is sent once per server (`EVALSHA`); after a restart, failover or `SCRIPT FLUSH`
 *   (`NOSCRIPT`), the store sends it again within the same decision: no caller sees `NOSCRIPT`.
 * - No decision waits past `commandTimeout`. Failures (connection lost or refused, timeout,
 *   `OOM`, `BUSY`, `LOADING`, Cluster transitions) go to the failure policy; permanent errors
 *   (script errors, `CROSSSLOT`, `WRONGTYPE`) are thrown. While Redis is failing, at most one
 *   decision at a time is sent to Redis as a probe; the others are decided by the policy without
 *   a round trip, and the first answer brings Redis back.
 *
 * @example
 * const store = new RedisStore({ url: process.env.REDIS_URL, onFailure: 'local' });
 * ResilienceModule.forRoot({ store });
 */
export class RedisStore implements ResilienceStore {
  /** @inheritdoc */
  readonly kind = 'redis';
  /** The client in use (created by the store, or the one given). */
  readonly client: RedisClient;
  /** Whether the store created the client (and closes it). */
  readonly ownsClient: boolean;
  /** The key prefix inside the hash tag. */
  readonly keyPrefix: string;
  /** The longest a decision waits for Redis, in milliseconds. */
  readonly commandTimeoutMs: number;
  /** The failure policy used when a rate limiter does not state its own. */
  readonly onFailurePolicy: StoreFailurePolicy;
  /** Subscribes to decisions the failure policy made instead of Redis. */
  readonly onFailure: Event<RedisStoreFailureEvent>;
  /** @internal A clock replacing Redis `TIME` (tests only). */
  [SCRIPT_CLOCK]: (() => number) | undefined = undefined;
  /** @internal A listener of raw script replies (tests only). */
  [SCRIPT_REPLY]: ((reply: ScriptReply) => void) | undefined = undefined;

  private readonly failureEvents = new EventSource<RedisStoreFailureEvent>();
  private readonly deadlines: DeadlineQueue;
  private readonly clientPrefix: string | undefined;
  private readonly logger: (message: string) => void;
  private readonly localMaxKeys: number;
  private readonly blocks: Map<string, Block> | undefined;
  private readonly blockLimit: number;
  private local: MemoryStore | undefined = undefined;
  /** This turn's batches, in order, and those more decisions may join (by `limits`). */
  private queued: Batch[] = [];
  private readonly open = new Map<readonly LimitSpec[], Batch>();
  private flushing = false;
  private lastLimits: readonly LimitSpec[] | undefined = undefined;
  private lastLayout: ScriptLayout | undefined = undefined;
  /**
   * Shards whose last command failed, each with whether a probe is in flight: Cluster slots, or
   * shard 0 for a standalone server. A dead primary sends only its own slots to the failure policy.
   */
  private readonly failing = new Map<number, boolean>();
  /** Until the first connection attempt ends, decisions wait for it (bounded by the timeout). */
  private firstConnection: Promise<void> | undefined = undefined;
  private connecting = false;
  private started = false;
  private closed = false;
  private initialization: Promise<void> | undefined = undefined;
  private evictionChecked: Promise<string | undefined> | undefined = undefined;
  private readonly detach: Array<() => void> = [];
  private readonly counters = {
    decisions: 0,
    blocked: 0,
    failOpen: 0,
    local: 0,
    failClosed: 0,
    permanentErrors: 0,
    scriptReloads: 0,
  };
  private readonly failures: Record<RedisFailureKind, number> = {
    offline: 0,
    timeout: 0,
    connection: 0,
    oom: 0,
    busy: 0,
    loading: 0,
    cluster: 0,
    closed: 0,
  };

  /** @throws InvalidOptionError naming the option when an option cannot work. */
  constructor(options: RedisStoreOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object such as { url: "redis://localhost:6379" }');
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    const sources = (['client', 'url', 'redis', 'cluster'] as const).filter((name) => options[name] !== undefined);
    const valid = sources.length === 1 || (sources.length === 2 && sources.includes('url') && sources.includes('redis'));
    if (!valid) {
      throw new InvalidOptionError(sources.join('+') || 'client', sources.length === 0 ? undefined : sources, 'exactly one of client, url (optionally with redis), redis or cluster');
    }
    if (options.client !== undefined && !isRedisClient(options.client)) throw new InvalidOptionError('client', options.client, 'an ioredis Redis or Cluster instance');
    if (options.url !== undefined && (typeof options.url !== 'string' || !/^rediss?:\/\//.test(options.url))) {
      throw new InvalidOptionError('url', options.url, 'a Redis URL such as "redis://host:6379" or "rediss://…"');
    }
    if (options.redis !== undefined && (typeof options.redis !== 'object' || options.redis === null)) throw new InvalidOptionError('redis', options.redis, 'ioredis options (an object)');
    if (options.cluster !== undefined && (typeof options.cluster !== 'object' || options.cluster === null || !Array.isArray(options.cluster.nodes) || options.cluster.nodes.length === 0)) {
      throw new InvalidOptionError('cluster', options.cluster, 'an object { nodes: [...startup nodes], options?: ClusterOptions }');
    }
    const keyPrefix = options.keyPrefix ?? 'nr:';
    if (typeof keyPrefix !== 'string' || keyPrefix.length > 100 || /[{}]/.test(keyPrefix)) {
      throw new InvalidOptionError('keyPrefix', keyPrefix, 'a string of at most 100 characters without "{" or "}"');
    }
    this.keyPrefix = keyPrefix;
    this.commandTimeoutMs = options.commandTimeout === undefined ? DEFAULT_COMMAND_TIMEOUT_MS : toMilliseconds(options.commandTimeout, 'commandTimeout', { allowZero: false, timer: true });
    this.deadlines = new DeadlineQueue(this.commandTimeoutMs);
    this.onFailurePolicy = enumOption(options.onFailure, 'onFailure', 'fail-open', FAILURE_POLICIES);
    this.localMaxKeys = integerOption(options.localMaxKeys, 'localMaxKeys', 10_000, 1);
    this.logger = functionOption<(message: string) => void>(options.logger, 'logger') ?? defaultLogger;
    const blockCache = options.blockCache ?? false;
    if (typeof blockCache === 'boolean') {
      this.blockLimit = DEFAULT_BLOCK_CACHE_KEYS;
      this.blocks = blockCache ? new Map() : undefined;
    } else if (typeof blockCache === 'object' && blockCache !== null) {
      rejectUnknownOptions(blockCache, ['maxKeys'], 'blockCache');
      this.blockLimit = integerOption(blockCache.maxKeys, 'blockCache.maxKeys', DEFAULT_BLOCK_CACHE_KEYS, 1);
      this.blocks = new Map();
    } else {
      throw new InvalidOptionError('blockCache', blockCache, 'a boolean or { maxKeys?: number }');
    }
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? createOwnedClient(options, this.commandTimeoutMs);
    this.clientPrefix = clientKeyPrefix(this.client);
    this.onFailure = this.failureEvents.event;
  }

  /**
   * Connects (clients the store created, or a given client still in `wait`), then checks the
   * eviction policy (see {@link checkEviction}). Never rejects: when Redis cannot be reached,
   * decisions follow the failure policy until it can. Called on first use if not before;
   * idempotent.
   */
  init(): Promise<void> {
    this.start();
    this.initialization ??= (async () => {
      await this.waitFirstConnection(Math.max(1_000, 10 * this.commandTimeoutMs));
      if (this.client.status === 'ready') await this.checkEviction();
    })();
    return this.initialization;
  }

  /** Sends `PING`, bounded by `commandTimeout`; rejects at once when the client is not connected (nothing is queued). */
  async ping(): Promise<void> {
    this.start();
    if (this.client.status !== 'ready') throw new Error(`Redis is not connected (${this.client.status})`);
    await sendBounded(this.client, command('ping', [], undefined), this.commandTimeoutMs);
  }

  /** Connects and checks the eviction policy (warning through `logger`); what the Nest module calls at bootstrap. */
  async prepare(): Promise<string | undefined> {
    await this.init();
    return undefined;
  }

  /** A circuit breaker shared by every instance using this Redis (`shared: true` in the Nest module). */
  createSharedCircuitBreaker(options: SharedCircuitBreakerSettings, clock: Clock): SharedCircuitBreaker {
    return new SharedCircuitBreaker(options, { client: this.client, keyPrefix: this.keyPrefix, clock, commandTimeout: this.commandTimeoutMs });
  }

  /** A bulkhead whose cap holds across every instance using this Redis (`distributed: true` in the Nest module). */
  createDistributedBulkhead(options: DistributedBulkheadSettings, clock: Clock): DistributedBulkhead {
    return new DistributedBulkhead(options, { client: this.client, keyPrefix: this.keyPrefix, clock, commandTimeout: this.commandTimeoutMs });
  }

  /**
   * A retry budget per name shared by every instance using this Redis (`distributed: true` in the
   * module's `retryBudgets`); see {@link RedisRetryBudget} for how it avoids a round trip per call.
   */
  createRetryBudget(options: RetryBudgetOptions & { name: string }, clock: Clock): RedisRetryBudget {
    // Its exchanges run in the background: the client must be connecting before the first call.
    void this.init();
    return new RedisRetryBudget(options, { client: this.client, keyPrefix: this.keyPrefix, clock, commandTimeout: this.commandTimeoutMs });
  }

  /**
   * Reads Redis's `maxmemory-policy` and warns (through `logger`) when it lets Redis evict the
   * limiter's keys: an `allkeys-*` policy, or a `volatile-*` one (every limiter key carries an
   * expiry). Evicting a key resets its limit. Returns the policy, or `undefined` when it cannot
   * be read (`CONFIG` disabled or renamed, Redis unreachable). Warns at most once per store.
   */
  checkEviction(): Promise<string | undefined> {
    this.start();
    this.evictionChecked ??= (async () => {
      let policy: string | undefined;
      try {
        const reply = await sendBounded<unknown>(this.client, command('config', ['get', 'maxmemory-policy'], undefined), Math.max(this.commandTimeoutMs, 1_000));
        policy = configValue(reply);
      } catch {
        policy = undefined;
      }
      if (policy === undefined) {
        this.evictionChecked = undefined;
        return undefined;
      }
      if (policy.startsWith('allkeys-') || policy.startsWith('volatile-')) {
        this.logger(
          `nest-resilience: Redis maxmemory-policy is '${policy}': under memory pressure Redis may evict rate-limit keys ` +
            `(${policy.startsWith('allkeys-') ? 'any key may be evicted' : 'every limiter key has an expiry'}), which resets those limits. ` +
            `Use 'noeviction' (or a dedicated Redis) for the limiter's keys.`,
        );
      }
      return policy;
    })();
    return this.evictionChecked;
  }

  /** @inheritdoc */
  consume(
    key: string,
    limits: readonly LimitSpec[],
    cost: number,
    mode: ConsumeMode,
    nowMs: number,
    onFailure?: StoreFailurePolicy,
  ): RateLimitDecision | Promise<RateLimitDecision> {
    const blocks = this.blocks;
    if (blocks !== undefined) {
      if (mode === 'refund') {
        blocks.delete(key);
      } else {
        const block = blocks.get(key);
        if (block !== undefined) {
          if (nowMs < block.until && cost >= block.cost && block.limits === limits) return this.blockedDecision(block, nowMs);
          if (nowMs >= block.until) blocks.delete(key);
        }
      }
    }
    const policy = onFailure ?? this.onFailurePolicy;
    if (this.closed) return this.degrade('closed', undefined, key, limits, cost, mode, nowMs, policy);
    // First use: connect and check the eviction policy in the background.
    if (!this.started) void this.init();
    const client = this.client;
    if (client.status !== 'ready') {
      if (this.connecting) return this.afterConnection(key, limits, cost, mode, nowMs, policy);
      return this.degrade('offline', undefined, key, limits, cost, mode, nowMs, policy);
    }
    let probe = false;
    if (this.failing.size !== 0) {
      const shard = this.shardOf(key);
      const probing = this.failing.get(shard);
      if (probing === true) return this.degrade('offline', undefined, key, limits, cost, mode, nowMs, policy);
      if (probing === false) {
        this.failing.set(shard, true);
        probe = true;
      }
    }
    return this.evaluate(key, limits, cost, mode, nowMs, policy, probe, undefined);
  }

  /** @inheritdoc */
  async reset(key: string, limits: readonly LimitSpec[]): Promise<void> {
    this.blocks?.delete(key);
    this.local?.reset(key, limits);
    if (this.closed) throw new StoreUnavailableError(this.kind, FAIL_CLOSED_RETRY_AFTER_MS);
    this.start();
    if (this.client.status !== 'ready') await this.waitFirstConnection(this.commandTimeoutMs);
    const tag = this.hashTag(key);
    const keys = limits.map((spec) => `${tag}:${spec.name}`);
    try {
      if (this.client.status !== 'ready') throw new Error('Redis is not connected');
      // Decisions asked for before the reset reach Redis before it.
      if (this.flushing) this.flush();
      await sendBounded(this.client, command('del', keys, this.clientPrefix), this.commandTimeoutMs);
    } catch (error) {
      if (classify(error) === undefined) throw error;
      throw new StoreUnavailableError(this.kind, FAIL_CLOSED_RETRY_AFTER_MS, error);
    }
  }

  /** Counters since the store was built. */
  stats(): RedisStoreStats {
    return { ...this.counters, failures: { ...this.failures }, available: this.failing.size === 0 && this.client.status === 'ready' };
  }

  /**
   * Stops using Redis: closes the client if the store created it (a given client is left as it
   * is) and forgets the in-process state. Later decisions follow the failure policy (kind
   * `'closed'`). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const detach of this.detach.splice(0)) detach();
    this.deadlines.clear();
    this.blocks?.clear();
    this.local?.clear();
    if (!this.ownsClient) return;
    const client = this.client;
    if (client.status === 'end') return;
    const ended = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1_000);
      client.once('end', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (client.status === 'ready') {
      try {
        // QUIT lets replies in flight arrive; a hung server cannot hold the shutdown past the timeout.
        await sendBounded(client, command('quit', [], undefined), this.commandTimeoutMs);
      } catch {
        // Disconnected below either way.
      }
    }
    client.disconnect();
    await ended;
  }

  /** The Cluster slot of a caller's keys (they share one hash tag); 0 on a standalone server. */
  private shardOf(key: string): number {
    return this.client.isCluster ? keySlot(`${this.clientPrefix ?? ''}${this.hashTag(key)}`) : 0;
  }

  /** The hash tag of a caller key: `{<keyPrefix><key>}`, with `%`, `{` and `}` escaped. */
  private hashTag(key: string): string {
    if (key.includes('{') || key.includes('}') || key.includes('%')) key = key.replace(/[%{}]/g, escapeChar);
    return `{${this.keyPrefix}${key}}`;
  }

  /** Attaches to the client's events and starts connecting if nobody has. */
  private start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    const client = this.client;
    const onReady = (): void => {
      this.failing.clear();
    };
    client.on('ready', onReady);
    if (this.ownsClient) client.on('error', ignoreError);
    this.detach.push(() => {
      client.off('ready', onReady);
      if (this.ownsClient) client.off('error', ignoreError);
    });
    const status = client.status;
    if (status === 'ready') return;
    if (status === 'wait' || status === 'connecting' || status === 'connect') {
      this.connecting = true;
      this.firstConnection = new Promise<void>((resolve) => {
        const done = (): void => {
          this.connecting = false;
          client.off('ready', done);
          client.off('close', done);
          client.off('end', done);
          resolve();
        };
        client.on('ready', done);
        client.on('close', done);
        client.on('end', done);
        this.detach.push(done);
      });
      if (status === 'wait') client.connect().catch(() => undefined);
    }
  }

  /** Waits for the first connection attempt to end, at most `ms`. */
  private waitFirstConnection(ms: number): Promise<void> {
    const first = this.firstConnection;
    if (first === undefined || !this.connecting) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      void first.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private async afterConnection(key: string, limits: readonly LimitSpec[], cost: number, mode: ConsumeMode, nowMs: number, policy: StoreFailurePolicy): Promise<RateLimitDecision> {
    const deadline = performance.now() + this.commandTimeoutMs;
    await this.waitFirstConnection(this.commandTimeoutMs);
    if (this.closed) return this.degrade('closed', undefined, key, limits, cost, mode, nowMs, policy);
    if (this.client.status !== 'ready' || performance.now() + 1 >= deadline) return this.degrade(this.client.status === 'ready' ? 'timeout' : 'offline', undefined, key, limits, cost, mode, nowMs, policy);
    return this.evaluate(key, limits, cost, mode, nowMs, policy, false, deadline);
  }

  /**
   * One decision by the script. It joins this turn's batch of decisions with the same `limits`
   * (consume only, standalone or Sentinel: in a Cluster each key has its own slot), sent at the
   * end of the turn, or at once when full; see {@link flush}. `deadline` (on the
   * `performance.now()` clock): when the decision already waited (for the first connection), it
   * goes alone and at once; `undefined`: the whole `commandTimeout` is left.
   */
  private evaluate(
    key: string,
    limits: readonly LimitSpec[],
    cost: number,
    mode: ConsumeMode,
    nowMs: number,
    policy: StoreFailurePolicy,
    probe: boolean,
    deadline: number | undefined,
  ): Promise<RateLimitDecision> {
    return new Promise<RateLimitDecision>((resolve, reject) => {
      const batch = this.batchFor(limits, mode, deadline);
      const suffixes = batch.layout.suffixes;
      const tag = this.hashTag(key);
      for (let i = 0; i < suffixes.length; i++) batch.keys.push(tag + suffixes[i]!);
      batch.costs.push(cost === 1 ? '1' : String(cost));
      batch.decisions.push({ key, cost, nowMs, policy, probe, resolve, reject });
      if (deadline !== undefined || batch.keys.length >= MAX_BATCH_KEYS) this.sendBatch(batch);
    });
  }

  /** The batch a decision joins: this turn's open one for `limits`, or a new one. */
  private batchFor(limits: readonly LimitSpec[], mode: ConsumeMode, deadline: number | undefined): Batch {
    // The script counts a batch's decisions by its keys: a decision without limits goes alone.
    const shared = deadline === undefined && mode === 'consume' && limits.length > 0 && !this.client.isCluster;
    if (shared) {
      const open = this.open.get(limits);
      if (open !== undefined) return open;
    }
    let layout = this.lastLayout;
    if (limits !== this.lastLimits) {
      layout = scriptLayouts.get(limits);
      if (layout === undefined) {
        layout = scriptLayout(limits);
        scriptLayouts.set(limits, layout);
      }
      this.lastLimits = limits;
      this.lastLayout = layout;
    }
    const batch: Batch = { limits, layout: layout!, mode, deadline, keys: [], costs: [], decisions: [], sent: false };
    if (deadline === undefined) {
      if (shared) this.open.set(limits, batch);
      this.queued.push(batch);
      if (!this.flushing) {
        this.flushing = true;
        // After the poll phase, not after this callback: the requests of every socket read in
        // this turn of the event loop share the script call (HTTP on one key: about a third less
        // CPU per request and 1.2–1.5 × the throughput; bench/RESULTS.md), for a wait of one turn.
        setImmediate(this.flush);
      }
    }
    return batch;
  }

  /**
   * Sends the turn's batches, in one write. One script call for many decisions pays its fixed
   * cost (`EVALSHA`, `TIME`, reading the limits: about half of a lone decision's instructions in
   * Redis) once, and this process builds, writes and parses one command instead of one per
   * decision: with 256 callers, CPU per decision went from about 10 µs to 2 µs here and from
   * about 10 µs to 4–5 µs in Redis (bench/RESULTS.md). Writing the turn's commands at once (a
   * Cluster, several limiters) saves a system call per command on both sides.
   */
  private readonly flush = (): void => {
    this.flushing = false;
    this.open.clear();
    const queued = this.queued;
    this.queued = [];
    const corked: Writable[] = [];
    if (queued.length > 1) {
      const client = this.client;
      // A Cluster writes each command to its key's node: cork every master's connection.
      for (const connection of client.isCluster ? (client as Cluster).nodes('master') : [client as Redis]) {
        const stream = connection.stream as Writable | undefined;
        if (stream === undefined) continue;
        stream.cork();
        corked.push(stream);
      }
    }
    for (let i = 0; i < queued.length; i++) if (!queued[i]!.sent) this.sendBatch(queued[i]!);
    for (let i = 0; i < corked.length; i++) corked[i]!.uncork();
  };

  /**
   * Sends a batch as one `EVALSHA` (its decisions run in order, each atomic), reloading the script
   * once on `NOSCRIPT`. A full batch leaves before the end of its turn: Redis starts on it while
   * this process goes on with the next one.
   */
  private sendBatch(batch: Batch): void {
    batch.sent = true;
    if (this.open.get(batch.limits) === batch) this.open.delete(batch.limits);
    if (this.closed) {
      this.failAll(batch, undefined, undefined);
      return;
    }
    const args = this.batchArguments(batch);
    const first = this.scriptCommand('evalsha', args);
    if (batch.deadline === undefined) this.deadlines.add(first);
    else first.setTimeout(batch.deadline - performance.now());
    this.client.sendCommand(first);
    (first.promise as Promise<Buffer>).then(
      (reply) => this.answered(batch, first, reply),
      (error: unknown) => {
        if (!isNoScript(error) || this.closed) return this.failAll(batch, first, error);
        // The server lost its script cache (restart, failover, SCRIPT FLUSH): EVAL sends the
        // script, runs it and caches it again. NOSCRIPT means nothing ran: this is no replay.
        this.counters.scriptReloads++;
        const remaining = (batch.deadline ?? first.deadline) - performance.now();
        if (remaining < 1) return this.failAll(batch, first, new Error(TIMED_OUT));
        const copy = args.slice();
        copy[0] = RATE_LIMIT_SCRIPT;
        const second = this.scriptCommand('eval', copy);
        return sendBounded<Buffer>(this.client, second, remaining).then(
          (reply) => this.answered(batch, second, reply),
          (retryError: unknown) => this.failAll(batch, second, retryError),
        );
      },
    );
  }

  /** `EVALSHA` arguments of a batch (see rate-limit.lua.ts): every number already a string, so ioredis converts nothing. */
  private batchArguments(batch: Batch): string[] {
    const { keys, costs, layout } = batch;
    const args = [SCRIPT_SHA, String(keys.length)];
    for (let i = 0; i < keys.length; i++) args.push(keys[i]!);
    args.push(MODE_CODES[batch.mode], layout.count);
    for (let i = 0; i < layout.limitArguments.length; i++) args.push(layout.limitArguments[i]!);
    for (let i = 0; i < costs.length; i++) args.push(costs[i]!);
    const clock = this[SCRIPT_CLOCK];
    if (clock !== undefined) args.push(String(clock()));
    return args;
  }

  private scriptCommand(name: 'evalsha' | 'eval', args: Array<string | number>): StoreCommand {
    const prefix = this.clientPrefix;
    // Binary replies: the script answers in packed doubles.
    return new StoreCommand(name, args, prefix === undefined ? { replyEncoding: null } : { replyEncoding: null, keyPrefix: prefix });
  }

  /** Settles a batch's decisions from the script's reply (see rate-limit.lua.ts for its layout). */
  private answered(batch: Batch, sent: StoreCommand, reply: Buffer): void {
    if (sent.replayed) return this.failAll(batch, sent, new Error(REPLAY_REFUSED));
    const { decisions, limits } = batch;
    const count = limits.length;
    const size = 9 + 16 * count;
    const valid = Buffer.isBuffer(reply) && reply.length >= 8;
    const nowMs = valid ? reply.readDoubleLE(0) : Number.NaN;
    let offset = 8;
    for (let d = 0; d < decisions.length; d++) {
      const queued = decisions[d]!;
      if (this.failing.size !== 0) {
        // Redis answered for this key's shard: it is healthy again (an unusable reply only ends the probe).
        const shard = this.shardOf(queued.key);
        if (valid) this.failing.delete(shard);
        else if (queued.probe) this.failing.set(shard, false);
      }
      if (valid && reply[offset] === 2 && offset + 5 <= reply.length) {
        // A Redis error of this decision alone (one of its keys holds another type).
        const end = offset + 5 + reply.readUInt32LE(offset + 1);
        this.counters.permanentErrors++;
        queued.reject(new ReplyError(reply.toString('utf8', offset + 5, end)) as Error);
        offset = end;
        continue;
      }
      if (!valid || offset + size > reply.length) {
        queued.reject(new TypeError(`nest-resilience: unexpected reply from the rate-limit script: ${String(reply)}`));
        continue;
      }
      this.counters.decisions++;
      const allowed = reply[offset] === 1;
      this[SCRIPT_REPLY]?.({ allowed, nowMs });
      const states: LimitState[] = [];
      for (let i = 0; i < count; i++) {
        const spec = limits[i]!;
        const at = offset + 9 + 16 * i;
        states.push({ name: spec.name, limit: spec.limit, windowMs: spec.windowMs, remaining: reply.readDoubleLE(at), resetMs: reply.readDoubleLE(at + 8) });
      }
      let decision: RateLimitDecision;
      if (allowed) {
        decision = { allowed: true, retryAfterMs: 0, limits: states };
      } else {
        const retry = reply.readDoubleLE(offset + 1);
        decision = { allowed: false, retryAfterMs: retry === Infinity ? undefined : retry, limits: states };
        if (this.blocks !== undefined && batch.mode !== 'refund' && retry !== Infinity) this.block(queued.key, limits, queued.cost, queued.nowMs, decision);
      }
      offset += size;
      queued.resolve(decision);
    }
  }

  /** Settles every decision of a batch Redis did not decide (`sent` undefined: the store was closed before sending it). */
  private failAll(batch: Batch, sent: StoreCommand | undefined, error: unknown): void {
    for (const queued of batch.decisions) {
      try {
        queued.resolve(
          sent === undefined
            ? this.degrade('closed', error, queued.key, batch.limits, queued.cost, batch.mode, queued.nowMs, queued.policy)
            : this.failed(sent, error, queued.key, batch.limits, queued.cost, batch.mode, queued.nowMs, queued.policy, queued.probe),
        );
      } catch (thrown) {
        queued.reject(thrown);
      }
    }
  }

  private failed(
    sent: StoreCommand,
    error: unknown,
    key: string,
    limits: readonly LimitSpec[],
    cost: number,
    mode: ConsumeMode,
    nowMs: number,
    policy: StoreFailurePolicy,
    probe: boolean,
  ): RateLimitDecision | Promise<RateLimitDecision> {
    sent.abandoned = true;
    const shard = this.shardOf(key);
    // The probe is over; its shard stays failing until a command on it succeeds.
    if (probe) this.failing.set(shard, false);
    const kind = this.closed ? 'closed' : classify(error);
    if (kind === undefined) {
      this.counters.permanentErrors++;
      throw error;
    }
    if (kind !== 'closed' && !this.failing.has(shard)) this.failing.set(shard, false);
    return this.degrade(kind, error, key, limits, cost, mode, nowMs, policy);
  }

  /** A decision by the failure policy; `'fail-closed'` rejects (never for a refund). */
  private degrade(
    kind: RedisFailureKind,
    error: unknown,
    key: string,
    limits: readonly LimitSpec[],
    cost: number,
    mode: ConsumeMode,
    nowMs: number,
    policy: StoreFailurePolicy,
  ): RateLimitDecision | Promise<never> {
    this.failures[kind]++;
    if (this.failureEvents.hasListeners) this.failureEvents.emit({ kind, policy, key, error });
    if (policy === 'local') {
      this.counters.local++;
      this.local ??= new MemoryStore({ maxKeys: this.localMaxKeys });
      const decision = this.local.consume(key, limits, cost, mode, nowMs);
      decision.degraded = 'local';
      return decision;
    }
    if (policy === 'fail-closed' && mode !== 'refund') {
      this.counters.failClosed++;
      return Promise.reject(new StoreUnavailableError(this.kind, FAIL_CLOSED_RETRY_AFTER_MS, error));
    }
    this.counters.failOpen++;
    const states: LimitState[] = [];
    for (let i = 0; i < limits.length; i++) {
      const spec = limits[i]!;
      const capacity = spec.algorithm === 'token-bucket' || spec.algorithm === 'gcra' ? spec.burst : spec.limit;
      states.push({ name: spec.name, limit: spec.limit, windowMs: spec.windowMs, remaining: capacity, resetMs: 0 });
    }
    return { allowed: true, retryAfterMs: 0, limits: states, degraded: 'fail-open' };
  }

  private block(key: string, limits: readonly LimitSpec[], cost: number, nowMs: number, decision: RateLimitDecision): void {
    const blocks = this.blocks!;
    if (blocks.size >= this.blockLimit && !blocks.has(key)) {
      const oldest = blocks.keys().next().value;
      if (oldest !== undefined) blocks.delete(oldest);
    }
    blocks.delete(key);
    blocks.set(key, { until: nowMs + decision.retryAfterMs!, cost, since: nowMs, limits, states: decision.limits });
  }

  private blockedDecision(block: Block, nowMs: number): RateLimitDecision {
    this.counters.blocked++;
    const elapsed = nowMs - block.since;
    const states: LimitState[] = block.states.map((state) => ({ ...state, resetMs: state.resetMs > elapsed ? state.resetMs - elapsed : 0 }));
    return { allowed: false, retryAfterMs: block.until - nowMs, limits: states };
  }
}

/**
 * The `error` listener of clients the store owns: connection errors surface through the decisions
 * and the failure counters; without a listener ioredis would print every reconnection attempt.
 */
function ignoreError(): void {}

function defaultLogger(message: string): void {
  process.emitWarning(message, { code: 'NEST_RESILIENCE_REDIS' });
}

function escapeChar(char: string): string {
  return char === '%' ? '%25' : char === '{' ? '%7B' : '%7D';
}

/** The value of a `CONFIG GET <name>` reply: `[name, value]` (RESP2) or `{ name: value }` (RESP3 maps). */
function configValue(reply: unknown): string | undefined {
  if (Array.isArray(reply)) return typeof reply[1] === 'string' ? reply[1] : undefined;
  if (typeof reply === 'object' && reply !== null) {
    const value = Object.values(reply)[0];
    return typeof value === 'string' ? value : undefined;
  }
  return undefined;
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/**
 * Whether an error is a store failure (and of which kind) or a permanent error (`undefined`).
 * Reply errors are permanent unless their code says the server is in a passing state; every
 * other error (timeout, connection closed or refused, ioredis giving up) is a failure.
 */
export function classify(error: unknown): RedisFailureKind | undefined {
  if (!(error instanceof Error)) return 'connection';
  const message = error.message;
  if (error.name === 'ReplyError') {
    const space = message.indexOf(' ');
    const code = space < 0 ? message : message.slice(0, space);
    const kind = TRANSIENT_REPLIES[code];
    if (kind !== undefined) return kind;
    // Redis 6 wraps an error raised inside a script: "ERR Error running script (…): -OOM …".
    if (message.includes('OOM command not allowed')) return 'oom';
    return undefined;
  }
  if (message === TIMED_OUT) return 'timeout';
  if (/redirection|ClusterAllFailed|Cluster isn't ready|Failed to refresh slots/i.test(message) || error.name === 'ClusterAllFailedError') return 'cluster';
  return 'connection';
}
