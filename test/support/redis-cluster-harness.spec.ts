import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisCluster, type RedisCluster } from './redis-cluster.js';

describe('Redis Cluster test harness', () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  }, 60_000);
  afterAll(() => cluster?.stop());

  it('forms a 3-primary, 3-replica cluster that routes keys across primaries', async () => {
    const client = new Cluster(cluster.startupNodes, { lazyConnect: true });
    await client.connect();
    for (let i = 0; i < 30; i++) await client.set(`k${i}`, String(i));
    const primaries = client.nodes('master');
    expect(primaries).toHaveLength(3);
    const topology = await primaries[0]!.cluster('NODES');
    expect(String(topology).match(/\bslave\b/g)).toHaveLength(3);
    const counts = await Promise.all(primaries.map((node) => node.dbsize()));
    expect(counts.filter((count) => count > 0).length).toBe(3);
    await client.quit();
  });
});
