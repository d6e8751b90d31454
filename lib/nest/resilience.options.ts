import type { ExecutionContext } from '@nestjs/common';
import type { Clock } from '../core/clock.js';
import type { Duration } from '../core/duration.js';
import type { ErrorMatcher } from '../core/matchers.js';
import type { PolicyKind } from '../core/pipeline.js';
import type { AdaptiveLimitOptions } from '../policies/bulkhead/adaptive-limit.js';
import type { ChaosModuleOptions, ChaosOptions } from '../policies/chaos/chaos.options.js';
import type { HedgeOptions } from '../policies/hedge/hedge.options.js';
import type { LoadSheddingOptions } from '../policies/load-shedding/load-shedding.options.js';
import type { PriorityLevel } from '../policies/load-shedding/priority.js';
import type { RateLimitOptions } from '../policies/rate-limit/rate-limit.options.js';
import type { RetryBudgetOptions } from '../policies/retry/retry-budget.js';
import type { RetryOptions } from '../policies/retry/retry.options.js';
import type { TimeoutOptions } from '../policies/timeout/timeout.options.js';
import type { DistributedBulkheadSettings, ResilienceStore, SharedCircuitBreakerSettings } from '../stores/store.interface.js';
import type { DeadlinePropagationOptions } from './deadline/deadline.options.js';

/**
 * Who a rate limit counts: the client IP (`'ip'`), the authenticated user (`request.user.id`
 * or `.sub`, falling back to the IP), one budget per route for everyone (`'route'`), one budget
 * for the whole policy (`'global'`), or a function of the execution context.
 */
export type RateLimitKey = 'ip' | 'user' | 'route' | 'global' | ((context: ExecutionContext) => string | undefined);

/** A circuit breaker as written in a decorator, a named policy or the module defaults. */
export interface CircuitBreakerSettings extends SharedCircuitBreakerSettings {
  /**
   * Share the window and the state with every instance of the application through the store
   * (a `RedisStore`): the fleet opens together and half-open probes are counted fleet-wide.
   * `quorum` and `syncInterval` apply to shared breakers only. @default false
   */
  shared?: boolean;
}

/** A bulkhead as written in a decorator, a named policy or the module defaults. */
export interface BulkheadSettings extends DistributedBulkheadSettings {
  /**
   * One cap on concurrent calls for the whole fleet, through the store (a `RedisStore`); permits
   * are leases (`leaseTtl`) that expire when an instance dies holding them. @default false
   */
  distributed?: boolean;
  /**
   * Let the limit find itself instead of a fixed `maxConcurrent`: it grows while latency stays
   * near the no-load latency and shrinks when queueing shows (not with `maxConcurrent` or
   * `distributed`). See docs/adaptive-concurrency.md.
   */
  adaptive?: AdaptiveLimitOptions;
}

/** A rate limit as written in a decorator, a named policy or the module defaults. */
export interface RateLimitSettings extends Omit<RateLimitOptions, 'limit' | 'cost'> {
  /** Units per window, or a function of the request (tiers: e.g. more for paying users). */
  limit?: number | ((context: ExecutionContext) => number);
  /** Units one request costs, or a function of the request. @default 1 */
  cost?: number | ((context: ExecutionContext) => number);
  /** Who is counted. @default 'ip' */
  key?: RateLimitKey;
  /**
   * `'handler'`: each handler has its own budget per client; `'policy'`: every handler using
   * this named limit shares one budget per client. @default 'handler' ('policy' for a named policy
   * with `key: 'global'`, and for the module's globalRateLimit)
   */
  scope?: 'handler' | 'policy';
  /**
   * Count only failed requests (status ≥ 400 or a thrown error), e.g. failed logins: each request
   * is charged when admitted and refunded if it succeeds, so concurrent requests cannot slip
   * past the limit. @default false
   */
  skipSuccessful?: boolean;
}

/** Retry as written in a decorator or policy. */
export interface RetrySettings extends Omit<RetryOptions, 'budget'> {
  /** Controllers: also retry POST and PATCH requests (not idempotent). @default false */
  retryNonIdempotent?: boolean;
  /**
   * Caps retries to a share of the calls: the name of one of the module's `retryBudgets` (shared
   * with every retry and hedge naming it), or budget options for this retry alone.
   * @default no budget
   */
  budget?: string | RetryBudgetOptions;
}

/** A retry budget declared in the module's `retryBudgets`. */
export interface RetryBudgetSettings extends RetryBudgetOptions {
  /** Count calls and retries across the fleet through the store (a `RedisStore`). @default false */
  distributed?: boolean;
}

/** A hedge as written in a decorator or policy. */
export interface HedgeSettings extends Omit<HedgeOptions, 'budget'> {
  /**
   * Extra attempts draw on this budget: the name of one of the module's `retryBudgets`, or
   * budget options for this hedge alone. @default no budget
   */
  budget?: string | RetryBudgetOptions;
}

/** Fault injection as written in a decorator or policy. */
export type ChaosSettings = ChaosOptions;

/**
 * A call's priority as `@Priority` takes it: a level, a number (higher wins), or a function of
 * the call's arguments (on a controller, its `ExecutionContext`) returning one.
 */
// oxlint-disable-next-line no-explicit-any
export type PrioritySettings = PriorityLevel | number | ((...args: any[]) => PriorityLevel | number);

/**
 * A fallback handler: receives the error and the method's arguments (on a controller, the
 * handler's `ExecutionContext`: `context.switchToHttp().getRequest()` gives the request).
 */
// oxlint-disable-next-line no-explicit-any
export type FallbackFunction = (error: unknown, ...args: any[]) => unknown;

/**
 * A fallback as written in a decorator or policy: a function `(error, ...args)`, the name of a
 * method of the same class (called with the same arguments), or `{ value }`; each optionally
 * limited to some errors with `handles`.
 */
export type FallbackSettings =
  | FallbackFunction
  | string
  | {
      /** Computes the substitute from the error and the call's arguments; may be async. */
      handler: FallbackFunction;
      /** Only errors matching one of these are replaced (classes or predicates). @default every error */
      handles?: ErrorMatcher | ErrorMatcher[];
    }
  | {
      /** The name of a method of the same class, called as `method(error, ...args)`; checked at bootstrap. */
      method: string;
      /** Only errors matching one of these are replaced (classes or predicates). @default every error */
      handles?: ErrorMatcher | ErrorMatcher[];
    }
  | {
      /** The substitute itself (`undefined` and `null` included). */
      value: unknown;
      /** Only errors matching one of these are replaced (classes or predicates). @default every error */
      handles?: ErrorMatcher | ErrorMatcher[];
    };

/** A named policy: any subset of the six patterns, applied together by `@UseResilience(name)` or one at a time by name. */
export interface PolicyDefinition {
  /** The policy's breaker: one instance, shared by every method naming the policy. */
  circuitBreaker?: CircuitBreakerSettings;
  /**
   * One limit or several (all must pass). Each handler naming the policy has its own budget
   * unless `scope: 'policy'` (or `key: 'global'`) makes it one budget for all.
   */
  rateLimit?: RateLimitSettings | RateLimitSettings[];
  /** Retry settings, merged under a decorator's inline options. */
  retry?: RetrySettings;
  /** The call's time limit, alone or as `{ duration }`. */
  timeout?: Duration | TimeoutOptions;
  /** The policy's bulkhead: one instance, shared by every method naming the policy (one per downstream). */
  bulkhead?: BulkheadSettings;
  /** What to answer when the call fails (a method name is looked up on each decorated class). */
  fallback?: FallbackSettings;
  /** Hedged attempts for slow calls. */
  hedge?: HedgeSettings;
  /** Faults to inject (one instance per policy, switched through `ChaosRegistry`). */
  chaos?: ChaosSettings;
}

/** Settings applied under every decorator and named policy of a pattern. */
export interface PolicyDefaults {
  /** Under every `@CircuitBreaker` and every named policy's breaker. */
  circuitBreaker?: CircuitBreakerSettings;
  /** Under every `@RateLimit` limit and every named policy's limits (e.g. `{ window: '1m', algorithm: 'gcra' }`). */
  rateLimit?: RateLimitSettings;
  /** Under every `@Retry`. */
  retry?: RetrySettings;
  /** The time limit of a `@Timeout()` whose policy gives none. */
  timeout?: Duration | TimeoutOptions;
  /** Under every `@Bulkhead`. */
  bulkhead?: BulkheadSettings;
  /** Under every `@Hedge`. */
  hedge?: HedgeSettings;
}

/** Which rate-limit headers go out on every decided response. */
export type RateLimitHeaders = 'ietf' | 'legacy' | 'both' | 'none';

/** HTTP behaviour. */
export interface HttpOptions {
  /**
   * `'ietf'`: `RateLimit` and `RateLimit-Policy` (IETF draft); `'legacy'`: `X-RateLimit-Limit`,
   * `-Remaining`, `-Reset`; `'both'`; or `'none'`. `Retry-After` is always sent on a 429. @default 'ietf'
   */
  headers?: RateLimitHeaders;
  /**
   * The client address, when the platform's own (`request.ip`, which honours Express's
   * `trust proxy` and Fastify's `trustProxy`) is not what you want.
   */
  clientIp?: (request: unknown) => string | undefined;
  /** IPv6 clients are counted per network of this prefix length. @default 64 */
  ipv6Subnet?: number;
}

/**
 * Replaces the default mapping of our errors to what the caller receives. Return the error to
 * throw (an `HttpException`, an `RpcException`, or the error unchanged).
 */
export type ErrorMapping = (error: unknown, context: ExecutionContext) => unknown;

/** Options of `ResilienceModule.forRoot` / `forRootAsync`. */
export interface ResilienceModuleOptions {
  /** Where rate-limit state lives. @default a new MemoryStore */
  store?: ResilienceStore;
  /** Settings under every decorator of a pattern. */
  defaults?: PolicyDefaults;
  /** Named policies, referenced by name in decorators and `@UseResilience(name)`. */
  policies?: Record<string, PolicyDefinition>;
  /** HTTP headers and client identification. */
  http?: HttpOptions;
  /**
   * Pipeline order override, outermost first.
   * @default ['rateLimit', 'loadShedding', 'fallback', 'retry', 'hedge', 'circuitBreaker', 'timeout', 'bulkhead', 'chaos']
   */
  order?: PolicyKind[];
  /** Replaces the default error mapping (429 / 503 / 504 in HTTP, unchanged elsewhere). */
  errorMapping?: ErrorMapping;
  /** The time source of every policy (tests pass a FakeClock). @default systemClock */
  clock?: Clock;
  /**
   * Named retry budgets, referenced by `@Retry({ budget })` and `@Hedge({ budget })`: retries
   * and hedges naming one may add at most its `ratio` of the calls (plus a floor per second).
   */
  retryBudgets?: Record<string, RetryBudgetSettings>;
  /**
   * Shed low-priority calls (`@Priority`) while the event loop lags: one detector for the
   * application, started at bootstrap. @default off (`@Priority` then only orders bulkhead queues)
   */
  loadShedding?: LoadSheddingOptions;
  /**
   * Read the caller's deadline from a request header into the request's deadline, which bounds
   * every `@Timeout` of the request and what `deadlineHeaders()` stamps on outgoing calls.
   * @default off
   */
  deadline?: DeadlinePropagationOptions;
  /** Fault injection: whether `@Chaos` may inject in production. @default `{ allowInProduction: false }` */
  chaos?: ChaosModuleOptions;
}

/**
 * What `forRootAsync({ useClass })` and `forRootAsync({ useExisting })` expect: a provider whose
 * `create()` returns the module options.
 *
 * @example
 * \@Injectable()
 * class ResilienceConfig implements ResilienceOptionsFactory {
 *   constructor(private readonly config: ConfigService) {}
 *   create(): ResilienceModuleOptions {
 *     return { policies: { api: { rateLimit: { limit: this.config.get('API_LIMIT'), window: '1m' } } } };
 *   }
 * }
 */
export interface ResilienceOptionsFactory {
  /** Returns the module options; called once, when the module is instantiated. */
  create(): ResilienceModuleOptions | Promise<ResilienceModuleOptions>;
}

/** Options of the module definition itself (read when the module is defined, also with forRootAsync). */
export interface ResilienceModuleExtras {
  /** Register the module globally. @default false */
  isGlobal?: boolean;
  /**
   * A rate limit on every route of the application (a policy name or inline settings), through
   * a global guard; `@SkipRateLimit()` opts a route out. Counted per client across all routes.
   */
  globalRateLimit?: string | RateLimitSettings;
}
