import { Cluster, Command, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';

/** A Redis connection the store can use: a standalone / Sentinel client or a Cluster client. */
export type RedisClient = Redis | Cluster;

/** How to reach a Redis Cluster when the store creates the client itself. */
export interface RedisClusterConnection {
  /** Startup nodes, as for `new Cluster(nodes)`. */
  nodes: ClusterNode[];
  /**
   * ioredis Cluster options. The store always sets `lazyConnect: true` and
   * `enableOfflineQueue: false` on the Cluster client, and `autoResendUnfulfilledCommands: false`
   * and `maxRetriesPerRequest: 0` in `redisOptions` (the node connections).
   */
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
  /** When the command times out (`performance.now()` clock), once queued in a {@link DeadlineQueue}. */
  deadline = 0;
  /** The next command in its {@link DeadlineQueue}. */
  next: StoreCommand | undefined = undefined;
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

/** The message of a command given up on after its deadline (ioredis's own wording). */
export const TIMED_OUT = 'Command timed out';

/**
 * Deadlines of commands that all share one timeout, in one timer: commands are queued in the
 * order they were sent (so by deadline), and the timer fires at the first unsettled one's
 * deadline. Cheaper than a timer per command on the hot path; a command settles at most a
 * millisecond or so after its deadline.
 */
export class DeadlineQueue {
  private head: StoreCommand | undefined = undefined;
  private tail: StoreCommand | undefined = undefined;
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(private readonly timeoutMs: number) {}

  /** Starts the command's clock; call right before sending it. */
  add(sent: StoreCommand): void {
    // Answers come in order: drop the settled front of the queue as we go.
    let head = this.head;
    while (head !== undefined && head.isSettled) {
      const next = head.next;
      head.next = undefined;
      head = next;
    }
    this.head = head;
    sent.deadline = performance.now() + this.timeoutMs;
    if (head === undefined) {
      this.head = this.tail = sent;
    } else {
      this.tail!.next = sent;
      this.tail = sent;
    }
    if (this.timer === undefined) this.arm(this.timeoutMs);
  }

  /** Stops the timer; commands still queued are rejected as timed out. */
  clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.expire(Infinity);
  }

  private arm(ms: number): void {
    this.timer = setTimeout(this.fire, ms < 1 ? 1 : ms);
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    const now = performance.now();
    this.expire(now);
    if (this.head !== undefined) this.arm(this.head.deadline - now);
  };

  private expire(now: number): void {
    let head = this.head;
    while (head !== undefined && (head.isSettled || head.deadline <= now)) {
      const next = head.next;
      head.next = undefined;
      if (!head.isSettled) head.reject(new Error(TIMED_OUT));
      head = next;
    }
    this.head = head;
    if (head === undefined) this.tail = undefined;
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

/** CRC16-XMODEM (polynomial 0x1021), the checksum Redis Cluster hashes keys with, one byte at a time. */
const CRC16_TABLE = ((): Uint16Array => {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[byte] = crc;
  }
  return table;
})();

/**
 * The Redis Cluster slot of a key, as `CLUSTER KEYSLOT` computes it: CRC16 of the key's UTF-8
 * bytes, or of its hash tag (the bytes between the first `{` and the next `}`, when not empty),
 * modulo 16384. Lets the store tell which keys share a primary without asking the client.
 */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let index = start; index < end; index++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ bytes[index]!) & 0xff]!;
  return crc & 0x3fff;
}
