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
