// The `nest-resilience/redis` entry point: everything that needs ioredis (an optional peer
// dependency). The root entry point never imports this file, so apps on the memory store never
// load ioredis nor see its types.

// The distributed rate-limit store.
export {
  RedisStore,
  type RedisFailureKind,
  type RedisStoreFailureEvent,
  type RedisStoreOptions,
  type RedisStoreStats,
} from './stores/redis/redis.store.js';
export type { RedisClient, RedisClusterConnection } from './stores/redis/redis-client.js';
export { StoreUnavailableError, isStoreUnavailableError } from './stores/store.errors.js';

// The fleet-wide circuit breaker and bulkhead (also built by the Nest module for
// `shared: true` / `distributed: true` when the store is a RedisStore).
export {
  SharedCircuitBreaker,
  type SharedAdminResult,
  type SharedCircuitBreakerDependencies,
  type SharedCircuitBreakerOptions,
  type SharedCircuitBreakerStats,
  type SharedStateSource,
  type SharedStoreStatusEvent,
} from './stores/redis/shared-circuit-breaker.js';
export {
  DistributedBulkhead,
  type DistributedBulkheadDependencies,
  type DistributedBulkheadFailurePolicy,
  type DistributedBulkheadOptions,
  type DistributedBulkheadStats,
  type DistributedBulkheadStoreErrorEvent,
  type LeaseLostEvent,
} from './stores/redis/distributed-bulkhead.js';

// The fleet-wide retry budget (built by the Nest module for `retryBudgets` with
// `distributed: true` when the store is a RedisStore).
export {
  RedisRetryBudget,
  type RedisRetryBudgetDependencies,
  type RedisRetryBudgetStats,
  type RetryBudgetSource,
  type RetryBudgetStatusEvent,
} from './stores/redis/retry-budget.js';

// Fleet-wide live configuration of the named policies: a versioned Redis hash and a pub/sub
// channel (see docs/live-config.md).
export {
  LiveConfigChannel,
  type LiveConfigAppliedEvent,
  type LiveConfigApply,
  type LiveConfigDependencies,
  type LiveConfigEntry,
  type LiveConfigOptions,
  type LiveConfigPublishOptions,
  type LiveConfigRefusedEvent,
  type LiveConfigStoreErrorEvent,
} from './stores/redis/live-config.js';
export { ResilienceLiveConfigModule } from './nest/live-config/resilience-live-config.module.js';
export { ResilienceLiveConfig } from './nest/live-config/resilience-live-config.service.js';
