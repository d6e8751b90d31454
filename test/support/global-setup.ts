import type { TestProject } from 'vitest/node';
import { startRedis } from './redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the `redis-server` this test run started for itself. */
    redisUrl: string;
    /** Its PID, so tests can tell it from servers they start themselves. */
    redisPid: number;
  }
}

/** Starts one `redis-server` for the whole run and stops it, by PID, at the end. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redis = await startRedis();
  project.provide('redisUrl', redis.url);
  project.provide('redisPid', redis.pid);
  return () => redis.stop();
}
