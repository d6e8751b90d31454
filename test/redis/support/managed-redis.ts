import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from '../../support/redis-server.js';

/**
 * A throwaway `redis-server` a fault test can kill, freeze, thaw and restart on the same port.
 * Started with `--save '' --appendonly no --enable-debug-command local` on loopback; every
 * process it starts is stopped by its PID.
 */
export interface ManagedRedis {
  readonly port: number;
  readonly url: string;
  /** PID of the current server process. */
  readonly pid: number;
  /** SIGKILL; resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGSTOP: the server hangs, its sockets stay open. */
  freeze(): void;
  /** SIGCONT. */
  thaw(): void;
  /** Starts a new server on the same port (after {@link kill}). */
  restart(): Promise<void>;
  /** Runs one command on a short-lived admin connection. */
  admin(...args: Array<string | number>): Promise<unknown>;
  /** Stops the current process (SIGKILL by PID). Idempotent. */
  stop(): Promise<void>;
}

/** Starts a managed `redis-server` on a free port, with `extraArgs` (e.g. `['--maxmemory-policy', 'allkeys-lru']`). */
export async function startManagedRedis(extraArgs: string[] = []): Promise<ManagedRedis> {
  const port = await freePort();
  let child = await spawnRedis(port, extraArgs);
  const url = `redis://127.0.0.1:${port}`;
  const kill = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const current = child;
      if (exited(current)) return resolve();
      current.once('exit', () => resolve());
      process.kill(current.pid!, 'SIGKILL');
    });
  return {
    port,
    url,
    get pid() {
      return child.pid!;
    },
    kill,
    freeze: () => process.kill(child.pid!, 'SIGSTOP'),
    thaw: () => process.kill(child.pid!, 'SIGCONT'),
    restart: async () => {
      await kill();
      child = await spawnRedis(port, extraArgs);
    },
    admin: async (...args) => {
      const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
      client.on('error', () => undefined);
      try {
        await client.connect();
        return await client.call(String(args[0]), ...args.slice(1));
      } finally {
        client.disconnect();
      }
    },
    stop: kill,
  };
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function spawnRedis(port: number, extraArgs: string[]): Promise<ChildProcess> {
  // The port may be briefly busy right after the previous process died: retry a few times.
  for (let attempt = 0; ; attempt++) {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local', ...extraArgs],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        let output = '';
        const timer = setTimeout(() => reject(new Error(`redis-server on port ${port} did not start:\n${output}`)), 10_000);
        const onData = (chunk: Buffer): void => {
          output += chunk.toString();
          if (output.includes('Ready to accept connections')) {
            clearTimeout(timer);
            child.stdout?.off('data', onData);
            child.off('exit', onExit);
            resolve();
          }
        };
        const onExit = (code: number | null): void => {
          clearTimeout(timer);
          reject(new Error(`redis-server exited with code ${code}:\n${output}`));
        };
        child.stdout?.on('data', onData);
        child.once('exit', onExit);
      });
      child.stdout?.resume();
      child.stderr?.resume();
      return child;
    } catch (error) {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
      if (attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
