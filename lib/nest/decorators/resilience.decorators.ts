import { applyDecorators, SetMetadata } from '@nestjs/common';
import type { Duration } from '../../core/duration.js';
import type { TimeoutOptions } from '../../policies/timeout/timeout.options.js';
import { RateLimitGuard } from '../enhancers/rate-limit.guard.js';
import { ResilienceInterceptor } from '../enhancers/resilience.interceptor.js';
import { RATE_LIMIT_METADATA, SKIP_RATE_LIMIT_METADATA } from '../resilience.constants.js';
import { toPriority } from '../../policies/load-shedding/priority.js';
import type {
  BulkheadSettings,
  ChaosSettings,
  CircuitBreakerSettings,
  FallbackSettings,
  HedgeSettings,
  PrioritySettings,
  RateLimitSettings,
  RetrySettings,
} from '../resilience.options.js';
import { attachEnhancer } from './attach-enhancers.js';
import {
  BulkheadMetadata,
  ChaosMetadata,
  CircuitBreakerMetadata,
  FallbackMetadata,
  HedgeMetadata,
  PriorityMetadata,
  RetryMetadata,
  TimeoutMetadata,
  UseResilienceMetadata,
  type PatternSpec,
} from './decorator-metadata.js';

export type { PatternSpec } from './decorator-metadata.js';

type Decorator = ClassDecorator & MethodDecorator;

function spec<T>(decorator: string, nameOrOptions: string | T | undefined, options: T | undefined): PatternSpec<T> {
  if (typeof nameOrOptions === 'string') {
    if (nameOrOptions === '') throw new TypeError(`${decorator}: the policy name must not be empty`);
    return { name: nameOrOptions, options };
  }
  if (options !== undefined) throw new TypeError(`${decorator}: inline options come second only after a policy name`);
  return { options: nameOrOptions };
}

const interceptor = attachEnhancer('interceptor', ResilienceInterceptor);
const guard = attachEnhancer('guard', RateLimitGuard);

/**
 * Opens the circuit when a dependency keeps failing, and rejects calls at once while it is open.
 *
 * @param nameOrOptions a named policy's breaker (one instance shared by every method naming it), or inline options (an instance per class and method).
 * @param options inline options merged over the named policy's.
 * @example
 * \@CircuitBreaker({ failureRateThreshold: 50, openDuration: '30s' })
 * \@CircuitBreaker('payments')
 */
export function CircuitBreaker(nameOrOptions?: string | CircuitBreakerSettings, options?: CircuitBreakerSettings): Decorator {
  return applyDecorators(CircuitBreakerMetadata(spec('@CircuitBreaker', nameOrOptions, options)), interceptor);
}

/**
 * Retries a failing call with backoff. On controllers only idempotent HTTP methods are retried
 * unless `retryNonIdempotent` is set. `maxAttempts` counts every attempt, the first included.
 *
 * @example
 * \@Retry({ maxAttempts: 3, backoff: 'exponential', delay: '100ms' })
 */
export function Retry(nameOrOptions?: string | RetrySettings, options?: RetrySettings): Decorator {
  return applyDecorators(RetryMetadata(spec('@Retry', nameOrOptions, options)), interceptor);
}

/**
 * Bounds each call (each attempt, under `@Retry`) by a time limit; the method can read the
 * call's `AbortSignal` with `getAbortSignal()`. Also exported as `@TimeLimit`, since
 * `@nestjs/schedule` exports a `Timeout` too.
 *
 * @example
 * \@Timeout('2s')
 * \@Timeout('payments')
 */
export function Timeout(nameOrDuration: string | Duration | TimeoutOptions, options?: Duration | TimeoutOptions): Decorator {
  const isDuration = typeof nameOrDuration === 'number' || (typeof nameOrDuration === 'string' && /^\s*\d/.test(nameOrDuration));
  const recorded: PatternSpec<Duration | TimeoutOptions> = isDuration
    ? { options: nameOrDuration as Duration }
    : spec<Duration | TimeoutOptions>('@Timeout', nameOrDuration as string | TimeoutOptions, options);
  return applyDecorators(TimeoutMetadata(recorded), interceptor);
}

/** `@Timeout` under a name that does not collide with `@nestjs/schedule`'s `Timeout`. */
export const TimeLimit = Timeout;

/**
 * Caps concurrent calls, with a bounded queue; beyond it calls are rejected at once. A named
 * bulkhead is shared by every method naming it (one per downstream).
 *
 * @example
 * \@Bulkhead({ maxConcurrent: 5, maxQueue: 10, queueTimeout: '1s' })
 */
export function Bulkhead(nameOrOptions?: string | BulkheadSettings, options?: BulkheadSettings): Decorator {
  return applyDecorators(BulkheadMetadata(spec('@Bulkhead', nameOrOptions, options)), interceptor);
}

/**
 * Answers with a substitute when the call fails: a function `(error, ...args)`, the name of a
 * method of the same class (checked at bootstrap; called as `method(error, ...args)`), or `{ value }`.
 * On a provider method `args` are the method's arguments; on a controller handler, its
 * `ExecutionContext`. Our own refusals (open circuit, full bulkhead, timeout) are failures too;
 * limit what it handles with `{ ..., handles: [CircuitOpenError] }`.
 *
 * @example
 * \@Fallback('cachedQuote')
 * \@Fallback({ value: [] , handles: [CircuitOpenError] })
 */
export function Fallback(fallback: FallbackSettings): Decorator {
  if (fallback === undefined || fallback === null) throw new TypeError('@Fallback needs a function, a method name or { value }');
  const recorded: PatternSpec<FallbackSettings> = { options: fallback };
  return applyDecorators(FallbackMetadata(recorded), interceptor);
}

/**
 * Starts another attempt when the first has not answered within a delay (fixed, or a percentile
 * of recent latencies), takes the first success and aborts the others through their
 * `AbortSignal`. For idempotent methods only: on controllers, like `@Retry`, only idempotent
 * HTTP methods are hedged. Extra attempts draw on the retry budget named in `budget`.
 *
 * @example
 * \@Hedge({ delay: { percentile: 95 }, maxHedges: 1, budget: 'search' })
 */
export function Hedge(nameOrOptions?: string | HedgeSettings, options?: HedgeSettings): Decorator {
  return applyDecorators(HedgeMetadata(spec('@Hedge', nameOrOptions, options)), interceptor);
}

/**
 * Injects faults (latency, errors, aborts) at a configured rate, innermost, where the dependency
 * would fail: to rehearse a failing dependency in tests and game days. Off in production
 * (`NODE_ENV=production`) unless the module sets `chaos: { allowInProduction: true }`; switched
 * at run time through `ChaosRegistry`.
 *
 * @example
 * \@Chaos({ latency: { rate: 0.1, delay: '500ms' }, error: { rate: 0.05 } })
 */
export function Chaos(nameOrOptions?: string | ChaosSettings, options?: ChaosSettings): Decorator {
  return applyDecorators(ChaosMetadata(spec('@Chaos', nameOrOptions, options)), interceptor);
}

/**
 * How much a call matters when there is not room for every call: under overload (the module's
 * `loadShedding`) the lowest priorities are refused first (503 with `Retry-After`), and a full
 * bulkhead queue gives way to higher priorities. A level, a number (higher wins), or a function
 * of the call's arguments (on a controller, its `ExecutionContext`).
 *
 * @example
 * \@Priority('low')
 * \@Priority((context: ExecutionContext) => (context.switchToHttp().getRequest().headers['x-tier'] === 'gold' ? 'high' : 'normal'))
 */
export function Priority(priority: PrioritySettings): Decorator {
  if (typeof priority !== 'function') toPriority(priority, '@Priority');
  return applyDecorators(PriorityMetadata({ options: priority }), interceptor);
}

/**
 * Limits how often a client may call. On controllers it is enforced by a guard, before pipes
 * and the handler; several `@RateLimit`s (or an array) on one handler must all pass, and a
 * rejected request consumes none of them.
 *
 * @example
 * \@RateLimit({ limit: 10, window: '1s' })
 * \@RateLimit({ limit: 1000, window: '1h' })
 * \@RateLimit('login', { key: 'ip', skipSuccessful: true })
 */
export function RateLimit(nameOrOptions?: string | RateLimitSettings | RateLimitSettings[], options?: RateLimitSettings): Decorator {
  const recorded: PatternSpec<RateLimitSettings>[] = Array.isArray(nameOrOptions)
    ? nameOrOptions.map((entry) => spec<RateLimitSettings>('@RateLimit', entry, undefined))
    : [spec<RateLimitSettings>('@RateLimit', nameOrOptions, options)];
  const record = ((target: object, key?: string | symbol, descriptor?: PropertyDescriptor) => {
    const holder = descriptor?.value ?? target;
    const existing: PatternSpec<RateLimitSettings>[] = Reflect.getMetadata(RATE_LIMIT_METADATA, holder) ?? [];
    // Decorators apply bottom-up; prepend so the list reads in source order.
    Reflect.defineMetadata(RATE_LIMIT_METADATA, [...recorded, ...existing], holder);
    return descriptor;
  }) as Decorator;
  return applyDecorators(record, guard);
}

/**
 * Opts a handler (or a whole controller) out of every rate limit, including the module's
 * `globalRateLimit`; `@SkipRateLimit(false)` on a method re-enables what its class skipped.
 */
export function SkipRateLimit(skip = true): Decorator {
  return SetMetadata(SKIP_RATE_LIMIT_METADATA, skip);
}

/**
 * Applies every pattern of a named policy at once; explicit decorators override it pattern by
 * pattern.
 *
 * @example
 * \@UseResilience('payments')
 */
export function UseResilience(policyName: string): Decorator {
  if (typeof policyName !== 'string' || policyName === '') throw new TypeError('@UseResilience needs a policy name');
  // Which enhancers the policy needs is only known once the module options are; attach both:
  // the guard and the interceptor pass straight through when the policy has nothing for them.
  return applyDecorators(UseResilienceMetadata(policyName), interceptor, guard);
}
