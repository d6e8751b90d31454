import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LiveConfigChannel, type LiveConfigEntry } from '../../lib/stores/redis/live-config.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';

// The channel on a Redis Cluster: the publish script touches two keys of one hash tag, pub/sub
// goes through a duplicate of the Cluster client.

describe('LiveConfigChannel on a Redis Cluster', () => {
  let cluster: RedisCluster;
  const clients: Cluster[] = [];
  const channels: LiveConfigChannel[] = [];

  const connect = async (): Promise<Cluster> => {
    const client = new Cluster(cluster.startupNodes, { lazyConnect: true });
    client.on('error', () => {});
    clients.push(client);
    await client.connect();
    return client;
  };

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  }, 60_000);

  afterAll(async () => {
    for (const channel of channels) await channel.close();
    for (const client of clients) client.disconnect();
    await cluster?.stop();
  });

  it('publishes, follows and loads across the cluster', async () => {
    const names = { channel: `lc-cluster-${randomUUID()}`, key: `lc-cluster-${randomUUID()}` };
    const received: LiveConfigEntry[][] = [[], []];
    const start = async (index: number): Promise<LiveConfigChannel> => {
      const channel = new LiveConfigChannel({ redis: await connect(), ...names });
      channels.push(channel);
      await channel.start((entry) => void received[index]!.push(entry));
      return channel;
    };
    const [a] = [await start(0), await start(1)];
    const entry = await a.publish('payments', { retry: { maxAttempts: 4 } });
    expect(entry.version).toBe(1);
    await expect.poll(() => received.map((list) => list.map((item) => item.version))).toEqual([[1], [1]]);

    const admin = await connect();
    const raw = await admin.hget(`{${names.key}}`, 'payments');
    expect(JSON.parse(raw!)).toEqual({ version: 1, epoch: entry.epoch, name: 'payments', origin: a.instanceId, definition: { retry: { maxAttempts: 4 } } });
    expect(await admin.get(a.epochKey)).toBe(entry.epoch);
    // An operator's publication through another node of the cluster.
    const version = await admin.incr(`{${names.key}}:version`);
    const operator = JSON.stringify({ version, name: 'payments', origin: 'ops', definition: { retry: { maxAttempts: 5 } } });
    await admin.hset(`{${names.key}}`, 'payments', operator);
    await admin.publish(names.channel, operator);
    await expect.poll(() => received.map((list) => list.at(-1)?.version)).toEqual([2, 2]);

    const late: LiveConfigEntry[] = [];
    const channel = new LiveConfigChannel({ redis: await connect(), ...names });
    channels.push(channel);
    await channel.start((item) => void late.push(item));
    expect(late).toEqual([{ version: 2, name: 'payments', origin: 'ops', definition: { retry: { maxAttempts: 5 } } }]);
  });
});
