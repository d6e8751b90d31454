import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Clock } from '../../core/clock.js';

/** An ioredis client: a standalone or Sentinel-backed `Redis`, or a `Cluster`. */
export type RedisClient = Redis | Cluster;

/** The part of an ioredis client the shared policies use; both `Redis` and `Cluster` have it. */
interface ScriptingClient {
  readonly status: string;
  evalsha(sha: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
}

/** The prefix of every key written by the shared policies unless told otherwise. */
export const DEFAULT_KEY_PREFIX = 'nest-resilience:';

/** The default bound on one Redis round trip of the shared policies. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 500;

/**
 * Redis could not answer in time or is not connected. Always treated as an outage (the shared
 * policies fall back to local decisions), never as a decision.
 */
export class RedisUnreachableError extends Error {
  constructor(
    /** `'timeout'`: no reply within the command timeout; `'disconnected'`: the client is reconnecting or closed. */
    readonly reason: 'timeout' | 'disconnected',
    /** The bound that expired, for `'timeout'`. */
    readonly timeoutMs?: number,
  ) {
    super(reason === 'timeout' ? `Redis did not answer within ${timeoutMs} ms` : 'The Redis client is not connected');
    this.name = 'RedisUnreachableError';
  }
}

/** A Lua script run with `EVALSHA`; its SHA-1 is computed once. */
export class RedisScript {
  /** The SHA-1 digest Redis knows the script by. */
  readonly sha: string;

  constructor(
    /** A name for error messages. */
    readonly name: string,
    /** The script's source. */
    readonly lua: string,
  ) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }
}

// Connection states in which a command would only wait in ioredis's offline queue.
const UNREACHABLE_STATES = new Set(['reconnecting', 'disconnecting', 'close', 'end']);

/**
 * Runs a script with `EVALSHA`; on `NOSCRIPT` (a restart, a failover, `SCRIPT FLUSH`: the script
 * cache is not replicated) it re-sends the source with `EVAL`, which also caches it again, so no
 * `NOSCRIPT` reaches the caller. The whole exchange is bounded by `timeoutMs`; a client that is
 * reconnecting or closed fails at once, so an outage never parks a caller in the offline queue.
 *
 * @throws RedisUnreachableError on timeout or when the client is not connected; the client's own
 *   error otherwise (see {@link isPermanentRedisError}).
 */
export function runScript(
  client: RedisClient,
  script: RedisScript,
  keys: readonly string[],
  args: ReadonlyArray<string | number>,
  timeoutMs: number,
  clock: Clock,
): Promise<unknown> {
  const scripting = client as unknown as ScriptingClient;
  if (UNREACHABLE_STATES.has(scripting.status)) return Promise.reject(new RedisUnreachableError('disconnected'));
  let attempt: Promise<unknown>;
  try {
    attempt = scripting.evalsha(script.sha, keys.length, ...keys, ...args).catch((error: unknown) => {
      if (!isNoScriptError(error)) throw error;
      return scripting.eval(script.lua, keys.length, ...keys, ...args);
    });
  } catch (error) {
    return Promise.reject(error);
  }
  return withTimeout(attempt, timeoutMs, clock);
}

/**
 * Settles like `promise`, or rejects with a {@link RedisUnreachableError} after `ms`. The late
 * outcome of `promise` is observed, so it never becomes an unhandled rejection.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, clock: Clock): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = clock.setTimeout(() => reject(new RedisUnreachableError('timeout', ms)), ms);
    promise.then(
      (value) => {
        clock.clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clock.clearTimeout(timer);
        reject(error);
      },
    );
  });
}

function isNoScriptError(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

// Replies that mean "Redis is there but cannot serve this now": an outage, not a bug.
const TRANSIENT_REPLY = /^(OOM|BUSY|LOADING|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS|MISCONF)\b|\bOOM command not allowed\b/;
const PERMANENT_REPLY = /^(ERR|WRONGTYPE|CROSSSLOT|NOPERM|NOAUTH|WRONGPASS|NOSCRIPT|EXECABORT)\b/;

/**
 * Whether a Redis error is permanent: a script error, `WRONGTYPE`, `CROSSSLOT`, a permission
 * error. Such errors are reported loudly (a process warning) instead of being taken for an outage.
 * Timeouts, lost connections, `OOM`, `BUSY`, `LOADING`, `READONLY` and cluster reconfiguration are
 * transient.
 */
export function isPermanentRedisError(error: unknown): boolean {
  if (!(error instanceof Error) || error instanceof RedisUnreachableError) return false;
  if (error.name !== 'ReplyError') return error.name === 'SharedRedisReplyError';
  if (TRANSIENT_REPLY.test(error.message)) return false;
  return PERMANENT_REPLY.test(error.message);
}

/** A script answered something the shared policies do not understand: a bug or a foreign key, never an outage. */
export class SharedRedisReplyError extends Error {
  constructor(script: string, reply: unknown) {
    super(`nest-resilience: unexpected reply from the ${script} script: ${safeJson(reply)}`);
    this.name = 'SharedRedisReplyError';
  }
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/**
 * The hash tag shared by every key of one shared policy, e.g. `{nest-resilience:breaker:payments}`.
 * Braces and `%` in the prefix and name are escaped, so a name cannot end the tag early: every key
 * of the policy lands in one Cluster slot and two names never share a key.
 */
export function hashTag(prefix: string, kind: string, name: string): string {
  return `{${escapeTagPart(prefix)}${kind}:${escapeTagPart(name)}}`;
}

function escapeTagPart(part: string): string {
  return part.replace(/[%{}]/g, (char) => (char === '%' ? '%25' : char === '{' ? '%7B' : '%7D'));
}

/**
 * Tracks the offset between the local clock and Redis `TIME`, to stamp each command with the
 * Redis time after which it must be ignored. A command that ioredis holds in its offline queue or
 * re-sends after a reconnect arrives after that deadline, and the script drops it instead of
 * applying a decision its caller has already given up on.
 */
export class RedisTimeTracker {
  private offset: number | undefined;

  constructor(private readonly clock: Clock) {}

  /** Records a Redis `TIME` reading (ms) received now. */
  observe(redisNowMs: number): void {
    this.offset = redisNowMs - this.clock.now();
  }

  /**
   * The Redis time (ms) after which a command sent now and bounded by `timeoutMs` is stale; `0`
   * (no check) until a first reading. The estimate lags Redis by the reply's one-way latency,
   * hence the small slack.
   */
  deadline(timeoutMs: number): number {
    return this.offset === undefined ? 0 : Math.ceil(this.clock.now() + this.offset + timeoutMs + 50);
  }
}

/** Validates the `client` dependency: anything that can run scripts like an ioredis client. */
export function isScriptingClient(client: unknown): client is RedisClient {
  return typeof client === 'object' && client !== null && typeof (client as ScriptingClient).evalsha === 'function' && typeof (client as ScriptingClient).eval === 'function';
}
