import { Cluster, Command, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';

/** A Redis connection the store can use: a standalone / Sentinel client or a Cluster client. */
export type RedisClient = Redis | Cluster;

/** How to reach a Redis Cluster when the store creates the client itself. */
export interface RedisClusterConnection {
  /** Startup nodes, as for `new Cluster(nodes)`. */
  nodes: ClusterNode[];
  /** ioredis Cluster options; the store overrides the ones listed in {@link RedisStoreOptions.cluster}. */
  options?: ClusterOptions;
}

/**
 * Options the store imposes on the clients it creates, whatever the user passed: a command
 * never waits in ioredis's offline queue (the failure policy decides at once instead) and is
 * never re-sent after a reconnection (a re-sent decision would be counted twice).
 */
const FORCED: Partial<RedisOptions> = {
  lazyConnect: true,
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 0,
};

/** Reconnection delays of the clients the store creates: fast at first, then every second. */
function retryStrategy(times: number): number {
  return Math.min(times * 50, 1_000);
}

/** Creates the client a store owns, from a URL, ioredis options or Cluster nodes; not yet connected. */
export function createOwnedClient(source: { url?: string; redis?: RedisOptions; cluster?: RedisClusterConnection }, commandTimeoutMs: number): RedisClient {
  const connectTimeout = Math.max(1_000, commandTimeoutMs * 10);
  if (source.cluster !== undefined) {
    const options = source.cluster.options ?? {};
    return new Cluster(source.cluster.nodes, {
      clusterRetryStrategy: retryStrategy,
      ...options,
      lazyConnect: true,
      enableOfflineQueue: false,
      // Node connections keep the offline queue the Cluster client relies on while it routes.
      redisOptions: { connectTimeout, ...options.redisOptions, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 },
    });
  }
  const options: RedisOptions = { retryStrategy, connectTimeout, ...source.redis, ...FORCED };
  return source.url === undefined ? new Redis(options) : new Redis(source.url, options);
}

/** Whether `value` looks like an ioredis `Redis` or `Cluster` instance. */
export function isRedisClient(value: unknown): value is RedisClient {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { sendCommand?: unknown }).sendCommand === 'function' &&
    typeof (value as { status?: unknown }).status === 'string' &&
    typeof (value as { on?: unknown }).on === 'function'
  );
}

/**
 * An ioredis command that is never applied twice and never applied after the store gave up on
 * it. ioredis writes a command again in two cases where Redis may already have run it, or runs it
 * long after the caller was answered: after a reconnection (`autoResendUnfulfilledCommands`, the
 * offline queue of a client passed in) and after the store's timeout. Both turn the command into
 * a harmless `PING` when it is written; the store reads such an answer as a lost connection (the
 * decision's outcome is unknown). Cluster redirections (`MOVED`, `ASK`, `TRYAGAIN`: the command
 * did not run) still go through: the connection first written to is alive then.
 */
export class StoreCommand extends Command {
  /** Set once the store has settled the decision without this command's answer. */
  abandoned = false;
  /** Set when ioredis writes the command again after the connection it was written to closed. */
  replayed = false;
  private firstSocket: object | undefined = undefined;

  override toWritable(socket: object): string | Buffer {
    if (this.firstSocket === undefined) {
      this.firstSocket = socket;
    } else if (socket !== this.firstSocket && (this.firstSocket as { destroyed?: boolean }).destroyed === true) {
      this.replayed = true;
    }
    if (this.abandoned || this.replayed) {
      this.name = 'ping';
      this.args = [];
    }
    return super.toWritable(socket);
  }
}

/** The `keyPrefix` an ioredis client applies to every key, if any. */
export function clientKeyPrefix(client: RedisClient): string | undefined {
  const prefix = (client.options as { keyPrefix?: unknown } | undefined)?.keyPrefix;
  return typeof prefix === 'string' && prefix !== '' ? prefix : undefined;
}

/** Sends `command` on `client`, bounded by `timeoutMs` (the command rejects with "Command timed out"). */
export function sendBounded<T>(client: RedisClient, sent: StoreCommand, timeoutMs: number): Promise<T> {
  sent.setTimeout(timeoutMs);
  client.sendCommand(sent);
  return sent.promise as Promise<T>;
}

/** A bounded command other than the decision script (CONFIG GET, DEL, SCRIPT LOAD…). */
export function command(name: string, args: Array<string | number>, keyPrefix: string | undefined): StoreCommand {
  return new StoreCommand(name, args, keyPrefix === undefined ? { replyEncoding: 'utf8' } : { replyEncoding: 'utf8', keyPrefix });
}
