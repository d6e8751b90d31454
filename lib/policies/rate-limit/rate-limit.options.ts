import type { PolicyMode } from '../../core/dependencies.js';
import type { Duration } from '../../core/duration.js';

/** The rate-limiting algorithms. See the docs for the worst-case bound of each. */
export type RateLimitAlgorithm = 'token-bucket' | 'sliding-window-log' | 'sliding-window-counter' | 'fixed-window' | 'gcra';

/** What a store does when it cannot answer (Redis down): see the Redis store. */
export type StoreFailurePolicy = 'fail-open' | 'fail-closed' | 'local';

/** One limit: `limit` units per `window`. */
export interface RateLimitOptions {
  /** Name of the limit, part of its keys and shown in headers and metrics. @default 'default' */
  name?: string;
  /** @default 'sliding-window-counter' */
  algorithm?: RateLimitAlgorithm;
  /** Units admitted per window (for token bucket and GCRA: the sustained rate is `limit` per `window`). */
  limit: number;
  /** The window. @default '1m' */
  window?: Duration;
  /** Token bucket and GCRA: the most units admitted at once. @default limit */
  burst?: number;
  /** Units one call consumes. @default 1 */
  cost?: number;
  /** `'shadow'` decides and emits as usual but never rejects. @default 'enforce' */
  mode?: PolicyMode;
  /** Outbound use: wait up to this long for a permit instead of rejecting at once. @default 0 (reject) */
  maxWait?: Duration;
  /** What to do when the store fails. Used by stores that can fail (Redis). @default the store's own */
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
}
