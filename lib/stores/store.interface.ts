import type { Clock } from '../core/clock.js';
import type { Duration } from '../core/duration.js';
import type { BulkheadInstance } from '../policies/bulkhead/bulkhead.instance.js';
import type { BulkheadOptions } from '../policies/bulkhead/bulkhead.options.js';
import type { CircuitBreakerInstance } from '../policies/circuit-breaker/circuit-breaker.instance.js';
import type { CircuitBreakerOptions } from '../policies/circuit-breaker/circuit-breaker.options.js';
import type { RetryBudgetInstance, RetryBudgetOptions } from '../policies/retry/retry-budget.js';
import type { RateLimitAlgorithm, RateLimitDecision, StoreFailurePolicy } from '../policies/rate-limit/rate-limit.options.js';

/** One limit of a decision, resolved to numbers. */
export interface LimitSpec {
  /** The limit's name; with the call's key it identifies the limit's state in the store. */
  readonly name: string;
  /** How the limit counts (see {@link RateLimitAlgorithm}). */
  readonly algorithm: RateLimitAlgorithm;
  /** Units per window. */
  readonly limit: number;
  /** The window, in milliseconds. */
  readonly windowMs: number;
  /** Token bucket and GCRA: capacity; other algorithms ignore it (they use `limit`). */
  readonly burst: number;
}

/**
 * What a decision does with the cost:
 * - `'consume'`: admit and charge every limit if all have room, else charge nothing;
 * - `'peek'`: tell whether a call of that cost would pass, charging nothing;
 * - `'refund'`: give the cost back (bounded by each limit's capacity); always "allowed".
 */
export type ConsumeMode = 'consume' | 'peek' | 'refund';

/**
 * Where rate-limit state lives. One call to {@link consume} decides one request across all its
 * limits atomically: a store shared by several processes (Redis) must implement it as a single
 * atomic step, never a read followed by a write.
 *
 * Implementations may answer synchronously (the memory store does), which lets the guard decide
 * without a promise.
 */
export interface ResilienceStore {
  /** A short name for logs and metrics, e.g. `'memory'` or `'redis'`. */
  readonly kind: string;
  /**
   * Decides a call of `cost` units for `key` against every limit in `limits`.
   * @param key the caller's identity, already namespaced by policy and handler and length-capped.
   * @param nowMs the engine clock's reading; stores with a clock of their own (Redis `TIME`) ignore it.
   * @param onFailure what a store that can fail (Redis) does when it cannot answer: `'fail-open'`
   *   admits (the decision carries `degraded: 'fail-open'`), `'fail-closed'` throws
   *   `StoreUnavailableError`, `'local'` decides in process (`degraded: 'local'`). `undefined`: the
   *   store's own default. A permanent error (a script error, CROSSSLOT) is thrown as it is.
   */
  consume(
    key: string,
    limits: readonly LimitSpec[],
    cost: number,
    mode: ConsumeMode,
    nowMs: number,
    onFailure?: StoreFailurePolicy,
  ): RateLimitDecision | Promise<RateLimitDecision>;
  /** Forgets the state of `key` for the given limits. */
  reset(key: string, limits: readonly LimitSpec[]): void | Promise<void>;
  /** Releases what the store holds (connections it opened). Idempotent. */
  close?(): Promise<void>;
  /**
   * Resolves when the store's backend answers, rejects when it does not (health checks call it
   * with a deadline of their own). Stores without a backend (the memory store) leave it out.
   */
  ping?(): Promise<void>;
  /**
   * Prepares the store (connects, loads scripts) and returns a warning to log at bootstrap, if
   * any (e.g. an eviction policy that could drop limiter keys). Called once by the module.
   */
  prepare?(): Promise<string | undefined>;
  /** Stores shared by a fleet: a circuit breaker whose window and state all instances share. */
  createSharedCircuitBreaker?(options: SharedCircuitBreakerSettings, clock: Clock): CircuitBreakerInstance;
  /** Stores shared by a fleet: a bulkhead whose cap holds across all instances. */
  createDistributedBulkhead?(options: DistributedBulkheadSettings, clock: Clock): BulkheadInstance;
  /**
   * Stores shared by a fleet: a retry budget per name that every instance deposits into and draws
   * from (`distributed: true` in the module's `retryBudgets`). It decides without a round trip per
   * call, from a share of the fleet's balance refreshed in the background.
   */
  createRetryBudget?(options: RetryBudgetOptions & { name: string }, clock: Clock): RetryBudgetInstance;
}

/** A fleet-wide breaker's settings: the local breaker's plus the fleet's. */
export interface SharedCircuitBreakerSettings extends CircuitBreakerOptions {
  /** Open fleet-wide only when at least this many instances see the threshold crossed. @default 1 */
  quorum?: number;
  /** How often an instance pushes its outcomes and reads the fleet's state. @default '250ms' */
  syncInterval?: Duration;
}

/** A fleet-wide bulkhead's settings: the local bulkhead's plus the permit lease. */
export interface DistributedBulkheadSettings extends BulkheadOptions {
  /** A permit held by an instance that died returns after this long. @default '10s' */
  leaseTtl?: Duration;
}
