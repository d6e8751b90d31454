import { Redis } from 'ioredis';
import { afterEach, inject } from 'vitest';

/**
 * Registers, for the calling test file, a list of cleanups run in reverse after each test, and a
 * factory of ioredis clients that are disconnected by it. Call at the top level of a spec file.
 */
export function useCleanups(): { cleanups: Array<() => Promise<void> | void>; client: (url?: string) => Redis } {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).toReversed()) await cleanup();
  });
  const client = (url = inject('redisUrl')): Redis => {
    const redis = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    redis.on('error', () => {});
    cleanups.push(() => redis.disconnect());
    return redis;
  };
  return { cleanups, client };
}
