import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startRedis, type RedisProcess } from './redis-server.js';

const run = promisify(execFile);

/** A Redis Cluster started by a test: `primaries` primaries with one replica each, on loopback. */
export interface RedisCluster {
  readonly nodes: RedisProcess[];
  /** `{ host, port }` of every node, for `new Cluster(...)`. */
  readonly startupNodes: Array<{ host: string; port: number }>;
  /** Stops every node still running (by PID) and removes the nodes' folders. */
  stop(): Promise<void>;
}

/**
 * Starts `2 × primaries` `redis-server --cluster-enabled yes` nodes and joins them with
 * `redis-cli --cluster create`, then waits until the cluster reports `cluster_state:ok` and every
 * replica has finished its first sync.
 */
export async function startRedisCluster(primaries = 3): Promise<RedisCluster> {
  const folder = mkdtempSync(join(tmpdir(), 'nest-resilience-cluster-'));
  const nodes: RedisProcess[] = [];
  try {
    for (let index = 0; index < primaries * 2; index++) {
      nodes.push(
        await startRedis([
          '--cluster-enabled', 'yes',
          '--cluster-config-file', join(folder, `nodes-${index}.conf`),
          '--cluster-node-timeout', '1000',
          // A replica's first sync would otherwise wait 5 s, during which a failover stalls and a
          // killed primary's replica has nothing to serve.
          '--repl-diskless-sync-delay', '0',
          '--dir', folder,
        ]),
      );
    }
    const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
    await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const states = await Promise.all(
        nodes.map((node) => run('redis-cli', ['-p', String(node.port), 'cluster', 'info'], { timeout: 5_000 }).then(({ stdout }) => stdout)),
      );
      if (states.every((info) => info.includes('cluster_state:ok'))) break;
      if (Date.now() > deadline) throw new Error('the cluster did not reach cluster_state:ok');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (;;) {
      const replication = await Promise.all(
        nodes.map((node) => run('redis-cli', ['-p', String(node.port), 'info', 'replication'], { timeout: 5_000 }).then(({ stdout }) => stdout)),
      );
      const replicas = replication.filter((info) => info.includes('role:slave'));
      if (replicas.length === primaries && replicas.every((info) => info.includes('master_link_status:up') && info.includes('master_sync_in_progress:0'))) break;
      if (Date.now() > deadline) throw new Error('the replicas did not finish their first sync');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    await Promise.all(nodes.map((node) => node.stop()));
    rmSync(folder, { recursive: true, force: true });
    throw error;
  }
  return {
    nodes,
    startupNodes: nodes.map((node) => ({ host: '127.0.0.1', port: node.port })),
    stop: async () => {
      await Promise.all(nodes.map((node) => node.stop()));
      rmSync(folder, { recursive: true, force: true });
    },
  };
}
