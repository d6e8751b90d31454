import { Redis } from 'ioredis';
import { describe, expect, inject, it } from 'vitest';
import { startRedis } from './redis-server.js';

describe('Redis test harness', () => {
  it('the run has its own redis-server on a loopback port', async () => {
    const url = inject('redisUrl');
    expect(url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect(url).not.toBe('redis://127.0.0.1:6379');
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await client.connect();
    const info = await client.info('server');
    expect(info).toMatch(new RegExp(`process_id:${inject('redisPid')}\\b`));
    await client.quit();
  });

  it('a server started by a test is stopped by its PID', async () => {
    const redis = await startRedis();
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    await client.connect();
    expect(await client.ping()).toBe('PONG');
    client.disconnect();
    await redis.stop();
    expect(() => process.kill(redis.pid, 0)).toThrow(/ESRCH/);
  });
});
