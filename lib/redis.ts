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

// Shared circuit breaker and distributed bulkhead: exported here as they land.
