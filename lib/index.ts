// The public API of nest-resilience. Every export is listed by name; internals (explorer,
// metadata accessor, handler plans) are not exported.

// Core: time, durations, call context, composition, events, errors.
export { FakeClock, systemClock, flushMicrotasks, type Clock, type TimerHandle } from './core/clock.js';
export { CallContext, getAbortSignal, getRemainingTime, type Task } from './core/context.js';
export { MAX_TIMER_MS, toMilliseconds, type Duration } from './core/duration.js';
export type { PolicyDependencies, PolicyMode } from './core/dependencies.js';
export {
  InvalidOptionError,
  OperationAbortedError,
  ResilienceError,
  httpStatusOf,
  isOperationAbortedError,
  isResilienceError,
  retryAfterOf,
} from './core/errors.js';
export { EventSource, type Disposable, type Event } from './core/events.js';
export type { ErrorMatcher } from './core/matchers.js';
export { isPolicyRejection } from './core/rejection.js';
export {
  DEFAULT_ORDER,
  Pipeline,
  type ArgumentAwarePolicy,
  type KeyedPolicy,
  type PipelineCall,
  type PipelinePolicies,
  type PolicyKind,
} from './core/pipeline.js';
export type { Policy } from './core/policy.js';

// The six engines.
export * from './policies/circuit-breaker/index.js';
export * from './policies/rate-limit/index.js';
export * from './policies/retry/index.js';
export * from './policies/timeout/index.js';
export * from './policies/bulkhead/index.js';
export * from './policies/fallback/index.js';

// Beyond the six: hedging, load shedding, fault injection (adaptive limits and retry budgets
// are exported with the bulkhead and the retry).
export * from './policies/hedge/index.js';
export * from './policies/load-shedding/index.js';
export * from './policies/chaos/index.js';

// Stores.
export type { ConsumeMode, LimitSpec, ResilienceStore } from './stores/store.interface.js';
export { StoreUnavailableError, isStoreUnavailableError } from './stores/store.errors.js';
export { MemoryStore, type MemoryStoreOptions, type MemoryStoreStats } from './stores/memory/index.js';

// The Nest layer.
export { ResilienceModule } from './nest/resilience.module.js';
export { RESILIENCE_MODULE_OPTIONS } from './nest/resilience.module-definition.js';
export type {
  BulkheadSettings,
  ChaosSettings,
  CircuitBreakerSettings,
  ErrorMapping,
  FallbackFunction,
  FallbackSettings,
  HedgeSettings,
  HttpOptions,
  PolicyDefaults,
  PolicyDefinition,
  PrioritySettings,
  RateLimitHeaders,
  RateLimitKey,
  RateLimitSettings,
  ResilienceModuleExtras,
  ResilienceModuleOptions,
  ResilienceOptionsFactory,
  RetryBudgetSettings,
  RetrySettings,
} from './nest/resilience.options.js';
export {
  Bulkhead,
  Chaos,
  CircuitBreaker,
  Fallback,
  Hedge,
  Priority,
  RateLimit,
  Retry,
  SkipRateLimit,
  TimeLimit,
  Timeout,
  UseResilience,
  type PatternSpec,
} from './nest/decorators/resilience.decorators.js';
export { RateLimitGuard, GlobalRateLimitGuard } from './nest/enhancers/rate-limit.guard.js';
export { ResilienceInterceptor } from './nest/enhancers/resilience.interceptor.js';
export { CircuitBreakerRegistry } from './nest/registries/circuit-breaker.registry.js';
export { BulkheadRegistry } from './nest/registries/bulkhead.registry.js';
export { RateLimiterRegistry, type RateLimiterInfo } from './nest/registries/rate-limiter.registry.js';
export { HandlerLimiter, LimitGroup } from './nest/enhancers/handler-limiter.js';
export { ResilienceRegistry, type PolicyUpdateHook } from './nest/registries/resilience.registry.js';
export { ChaosRegistry } from './nest/registries/chaos.registry.js';
export * from './nest/deadline/index.js';
export { ResilienceEvents, type Labelled } from './nest/resilience.events.js';
export { TooManyRequestsException, mapError as defaultErrorMapping } from './nest/errors/error-mapping.js';

// Observability without optional packages (Prometheus, terminus and OpenTelemetry have entry points of their own).
export {
  DEFAULT_LOG_LEVELS,
  RESILIENCE_LOGGING_OPTIONS,
  ResilienceLogger,
  ResilienceLoggingModule,
  type ResilienceLogKind,
  type ResilienceLogLevel,
  type ResilienceLoggingOptions,
} from './observability/logging/index.js';
export { ResilienceIntrospectionModule, type CircuitBreakerView, type ResilienceIntrospectionOptions } from './observability/introspection/index.js';
