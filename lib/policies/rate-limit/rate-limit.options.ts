import type { PolicyMode } from '../../core/dependencies.js';
import type { Duration } from '../../core/duration.js';

/**
 * The rate-limiting algorithms, with the most each can admit (`L` = limit, `W` = window,
 * `B` = burst, rate `r = L / W`):
 * - `'fixed-window'`: ≤ L per aligned window, but up to 2L in a sliding window of length W
 *   (a burst at the end of one window and another at the start of the next);
 * - `'sliding-window-counter'`: ≤ L per aligned window and up to 2L in a sliding window (it
 *   assumes the previous window's calls were evenly spread); O(1) memory per key;
 * - `'sliding-window-log'`: exact, ≤ L in every window of length W; memory O(L) per key
 *   (8 bytes per admitted unit still in the window);
 * - `'token-bucket'` and `'gcra'` (the same policy, stored as a count or as one timestamp):
 *   ≤ B + r·Δ in every interval of length Δ.
 */
export type RateLimitAlgorithm = 'token-bucket' | 'sliding-window-log' | 'sliding-window-counter' | 'fixed-window' | 'gcra';

/** What a store does when it cannot answer (Redis down): see the Redis store. */
export type StoreFailurePolicy = 'fail-open' | 'fail-closed' | 'local';

/** One limit: `limit` units per `window`. */
export interface RateLimitOptions {
  /**
   * Name of the limit, part of its keys and shown in headers and metrics: 1 to 64 letters,
   * digits, `_`, `-` or `.`, unique among the limits of one rate limiter.
   * @default 'default' for the first limit, 'default-1', 'default-2'… for the next ones
   */
  name?: string;
  /** How usage is counted, and so how far a burst can exceed the limit (see {@link RateLimitAlgorithm}). @default 'sliding-window-counter' */
  algorithm?: RateLimitAlgorithm;
  /** Units admitted per window (for token bucket and GCRA: the sustained rate is `limit` per `window`). */
  limit: number;
  /** The window. @default '1m' */
  window?: Duration;
  /** Token bucket and GCRA: the most units admitted at once. @default limit */
  burst?: number;
  /**
   * Units one call consumes (an integer ≥ 1). Applies to the whole rate limiter, like `mode`,
   * `maxWait` and `onStoreError`: state it once (any limit stating it again must agree).
   * @default 1
   */
  cost?: number;
  /** `'shadow'` decides and emits as usual but never rejects. Applies to the whole rate limiter. @default 'enforce' */
  mode?: PolicyMode;
  /**
   * Outbound use: when refused, wait for room as long as the wait fits in `maxWait` (and in the
   * call's deadline) instead of rejecting at once. Applies to the whole rate limiter.
   * @default 0 (reject at once)
   */
  maxWait?: Duration;
  /** What to do when the store fails. Used by stores that can fail (Redis). Applies to the whole rate limiter. @default the store's own */
  onStoreError?: StoreFailurePolicy;
}

/** The state of one limit after a decision. */
export interface LimitState {
  /** The limit's name. */
  name: string;
  /** Units per window (the `q` of the IETF `RateLimit-Policy` header). */
  limit: number;
  /** The window in milliseconds (the `w` of `RateLimit-Policy`). */
  windowMs: number;
  /** Units still available after this decision (never negative). */
  remaining: number;
  /** Milliseconds until the limit is fully available again (the `t` of `RateLimit`). */
  resetMs: number;
}

/** The outcome of one decision over all the limits of a call. */
export interface RateLimitDecision {
  /** Whether the call was admitted (every limit had room; then all were charged). */
  allowed: boolean;
  /** Milliseconds until a call of the same cost could pass; 0 when allowed; `undefined` when it never could (cost above capacity). */
  retryAfterMs: number | undefined;
  /** Per-limit states, in the order the limits were given. */
  limits: LimitState[];
  /**
   * Set when the store could not answer and a failure policy decided instead: `'fail-open'`
   * (admitted without counting) or `'local'` (decided by an in-process limiter).
   */
  degraded?: 'fail-open' | 'local';
}
