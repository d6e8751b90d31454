import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { toMilliseconds, type Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { rejectUnknownOptions } from '../../core/validate.js';
import { createOwnedClient, isRedisClient, type RedisClient } from './redis-client.js';
import { RedisScript, runScript, withTimeout } from './shared-redis.js';

/** Options of a {@link LiveConfigChannel} and of `ResilienceLiveConfigModule.forRoot`. */
export interface LiveConfigOptions {
  /**
   * The Redis connection: an ioredis `Redis` or `Cluster` client (never closed by the channel), or
   * a URL (`redis://host:6379`) for a client the channel creates and closes. Pub/sub always uses a
   * second connection, a duplicate of this one, which the channel owns.
   */
  redis: RedisClient | string;
  /** The pub/sub channel changes are announced on. @default 'nest-resilience:live-config' */
  channel?: string;
  /**
   * The base of the two keys: the hash of current definitions is `{<key>}` and the version
   * counter `{<key>}:version` (one hash tag: one Cluster slot). Without `{` or `}`.
   * @default 'nest-resilience:live-config'
   */
  key?: string;
  /** This instance's identity, carried as `origin` by the changes it publishes. @default `<hostname>/<pid>/<random>` */
  instanceId?: string;
  /** The longest one Redis round trip may take (publishing, loading the hash, subscribing). @default '2s' */
  commandTimeout?: Duration;
}

/** What a {@link LiveConfigChannel} needs besides its options. */
export interface LiveConfigDependencies {
  /** Timers of the command timeouts and of the retries after a failed reload. @default systemClock */
  clock?: Clock;
}

/** One policy's definition as stored in the hash and announced on the channel. */
export interface LiveConfigEntry {
  /** The policy's name. */
  readonly name: string;
  /** The change's version: the fleet-wide counter's value when it was published (`INCR`). */
  readonly version: number;
  /** The `instanceId` of the instance (or the name of the operator's script) that published it. */
  readonly origin: string;
  /** The policy's full definition, JSON data. */
  readonly definition: Record<string, unknown>;
  /**
   * The run of the version counter the change was numbered in: a random id stored next to the
   * counter and replaced whenever the counter starts again (Redis lost its data). An instance that
   * sees another one forgets the versions it saw and reloads the hash. Absent from entries written
   * without it (an operator's script), which count as being of the current run.
   */
  readonly epoch?: string;
  /**
   * `true` when an application instance published the change after validating it against its own
   * policies (`ResilienceLiveConfig`); absent from an operator's write. Another instance refusing
   * such a change runs another version of the application (a rolling deploy): it keeps its
   * definition but leaves the hash alone.
   */
  readonly validated?: true;
}

/** Options of one {@link LiveConfigChannel.publish}. */
export interface LiveConfigPublishOptions {
  /**
   * The definition was validated against this application's policies before publishing (what
   * `ResilienceLiveConfig` does): marks the entry `validated`, so an instance refusing it never
   * overwrites it in the hash. Leave it out for an operator's change. @default false
   */
  validated?: boolean;
}

/** A change taken into account by this instance: `onApplied`. */
export interface LiveConfigAppliedEvent {
  /** The policy's name. */
  readonly name: string;
  /** The change's version. */
  readonly version: number;
  /** Who published it. */
  readonly origin: string;
  /** `false` when the definition was already the one in force (the publishing instance's own echo, a reload): nothing was rebuilt. */
  readonly changed: boolean;
}

/** A change this instance refused, keeping its previous definition: `onRefused`. */
export interface LiveConfigRefusedEvent {
  /** The policy's name; `undefined` when the message could not be read. */
  readonly name: string | undefined;
  /** The change's version; `undefined` when the message could not be read. */
  readonly version: number | undefined;
  /** Who published it; `undefined` when the message could not be read. */
  readonly origin: string | undefined;
  /** Why: an `InvalidOptionError` naming the option and the value, for an invalid definition, an unknown policy or a malformed message. */
  readonly error: unknown;
}

/** Redis could not be reached for one of the channel's operations: `onStoreError`. */
export interface LiveConfigStoreErrorEvent {
  /** What failed. Changes missed meanwhile are picked up by the reload that follows every reconnection. */
  readonly operation: 'subscribe' | 'load' | 'publish' | 'restore';
  /** The client's error. */
  readonly error: unknown;
}

/**
 * Takes a change into account; throws (an `InvalidOptionError`) to refuse it. Returns `false`
 * when the definition was already in force and nothing changed.
 */
export type LiveConfigApply = (entry: LiveConfigEntry) => boolean | void;

const DEFAULT_NAME = 'nest-resilience:live-config';
const KNOWN_OPTIONS = ['redis', 'channel', 'key', 'instanceId', 'commandTimeout'] as const;
const PUBLISH_OPTIONS = ['validated'] as const;
/** Delay before trying again after a failed subscribe or reload, while the connection stays up. */
const RESYNC_RETRY_MS = 1_000;

// One script: the version, the hash and the announcement can never disagree. The entry is
// assembled from JSON fragments encoded by the client (cjson would reformat numbers). A counter
// that starts again (Redis lost its data, or the key was deleted) starts a new epoch: instances
// that saw higher versions in the previous one would otherwise drop every change as old.
const PUBLISH = new RedisScript(
  'live-config publish',
  `local fresh = redis.call('EXISTS', KEYS[2]) == 0
local version = redis.call('INCR', KEYS[2])
local epoch = redis.call('GET', KEYS[3])
if fresh or not epoch then
  epoch = ARGV[6]
  redis.call('SET', KEYS[3], epoch)
end
local validated = ''
if ARGV[7] == '1' then validated = ',"validated":true' end
local entry = '{"version":' .. version .. ',"epoch":' .. cjson.encode(epoch) .. ',"name":' .. ARGV[2] .. ',"origin":' .. ARGV[3] .. validated .. ',"definition":' .. ARGV[4] .. '}'
redis.call('HSET', KEYS[1], ARGV[1], entry)
redis.call('PUBLISH', ARGV[5], entry)
return {version, epoch}`,
);

// The epoch and the hash read together: entries and the run they belong to cannot disagree.
const LOAD = new RedisScript(
  'live-config load',
  `return {redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[1])}`,
);

// Puts back the definition in force in place of a refused one, unless something newer came since.
const RESTORE = new RedisScript(
  'live-config restore',
  `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0`,
);

interface Subscriber {
  readonly status: string;
  on(event: string, listener: (...args: never[]) => void): unknown;
  subscribe(channel: string): Promise<unknown>;
  connect(): Promise<unknown>;
  disconnect(): void;
}

/**
 * Fleet-wide named-policy definitions over Redis: a hash of the current definition of each
 * policy, each with the version it was published under, and a pub/sub channel announcing every
 * change. An instance applies a change only when its version is newer than the last one it saw
 * for that policy (duplicates and out-of-order messages are dropped), loads the hash when it
 * starts and after every reconnection (so it converges after missing messages), and validates
 * every change through the `apply` callback: a refused change is reported by `onRefused` and
 * leaves the previous definition in force. Framework-free; the Nest module wires it to the
 * `ResilienceRegistry`.
 *
 * @example
 * const channel = new LiveConfigChannel({ redis: 'redis://localhost:6379' });
 * await channel.start((entry) => apply(entry.name, entry.definition));
 * await channel.publish('payments', { retry: { maxAttempts: 5 } });
 */
export class LiveConfigChannel {
  /** This instance's identity, the `origin` of what it publishes. */
  readonly instanceId: string;
  /** The pub/sub channel. */
  readonly channel: string;
  /** The hash of current definitions, field = policy name. */
  readonly hashKey: string;
  /** The version counter. */
  readonly versionKey: string;
  /** The id of the version counter's current run (see {@link LiveConfigEntry.epoch}). */
  readonly epochKey: string;
  private readonly client: RedisClient;
  private readonly ownsClient: boolean;
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  private readonly applied = new EventSource<LiveConfigAppliedEvent>();
  private readonly refused = new EventSource<LiveConfigRefusedEvent>();
  private readonly storeErrors = new EventSource<LiveConfigStoreErrorEvent>();
  /** The last version seen per policy, applied or refused. */
  private readonly versions = new Map<string, number>();
  /** The last entry applied per policy, as its raw JSON and its epoch, to put back in place of a refused one. */
  private readonly inForce = new Map<string, { raw: string; epoch: string | undefined }>();
  /** The counter's run the versions seen belong to; `undefined` before any entry that tells it. */
  private epoch: string | undefined = undefined;
  /** Counts the changes of epoch: a reload that started before one is stale. */
  private epochChanges = 0;
  private apply: LiveConfigApply | undefined = undefined;
  private subscriber: Subscriber | undefined = undefined;
  private retryTimer: TimerHandle | undefined = undefined;
  private syncing: Promise<boolean> | undefined = undefined;
  private resyncAgain = false;
  private closed = false;
  /** Told when a reload succeeded: `start()` waits for the first one. */
  private readonly synced = new EventSource<void>();
  private loadedOnce = false;

  /** Announces each change applied (also those that changed nothing: `changed: false`). */
  readonly onApplied: Event<LiveConfigAppliedEvent> = this.applied.event;
  /** Announces each change refused; the previous definition stays in force. */
  readonly onRefused: Event<LiveConfigRefusedEvent> = this.refused.event;
  /** Announces Redis failures; none of them rejects anything the channel did not return. */
  readonly onStoreError: Event<LiveConfigStoreErrorEvent> = this.storeErrors.event;

  /**
   * @param options the connection and the names; see {@link LiveConfigOptions}.
   * @param dependencies the clock.
   * @throws InvalidOptionError naming the option.
   */
  constructor(options: LiveConfigOptions, dependencies: LiveConfigDependencies = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object such as { redis: "redis://localhost:6379" }');
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    this.channel = nameOption(options.channel, 'channel', DEFAULT_NAME);
    const key = nameOption(options.key, 'key', DEFAULT_NAME);
    if (/[{}]/.test(key)) throw new InvalidOptionError('key', key, 'a key without "{" or "}" (the channel wraps it in a hash tag)');
    this.hashKey = `{${key}}`;
    this.versionKey = `{${key}}:version`;
    this.epochKey = `{${key}}:epoch`;
    this.instanceId = nameOption(options.instanceId, 'instanceId', `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`);
    this.timeoutMs = toMilliseconds(options.commandTimeout ?? 2_000, 'commandTimeout', { allowZero: false, timer: true });
    this.clock = dependencies.clock ?? systemClock;
    if (typeof options.redis === 'string') {
      if (!/^rediss?:\/\//.test(options.redis)) throw new InvalidOptionError('redis', options.redis, 'an ioredis client or a Redis URL such as "redis://host:6379"');
      this.client = createOwnedClient({ url: options.redis }, this.timeoutMs);
      this.ownsClient = true;
    } else if (isRedisClient(options.redis)) {
      this.client = options.redis;
      this.ownsClient = false;
    } else {
      throw new InvalidOptionError('redis', options.redis, 'an ioredis client (Redis or Cluster) or a Redis URL such as "redis://host:6379"');
    }
    this.client.on('error', this.onClientError);
  }

  /**
   * Subscribes, then loads the hash (in that order, so no change falls between the two), handing
   * every change newer than what this instance saw to `apply`; follows the channel from then on.
   * Resolves once the hash is loaded, or after `commandTimeout` when Redis cannot be reached:
   * the channel then keeps trying and loads the hash as soon as it connects.
   */
  async start(apply: LiveConfigApply): Promise<void> {
    if (this.apply !== undefined) throw new Error('LiveConfigChannel.start() was already called');
    if (this.closed) throw new Error('LiveConfigChannel is closed');
    this.apply = apply;
    const subscriber = (this.client as unknown as { duplicate(): Subscriber }).duplicate();
    this.subscriber = subscriber;
    subscriber.on('error', this.onClientError);
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.receive(message, true);
    });
    // Also after every reconnection: ioredis subscribes again, but messages sent meanwhile are lost.
    subscriber.on('ready', this.onReady);
    // The command connection may come up after the subscriber: the reload waits for it.
    this.client.on('ready', this.onReady);
    if (this.ownsClient && this.client.status === 'wait') this.client.connect().catch(() => undefined);
    if (subscriber.status === 'wait') subscriber.connect().catch(() => undefined);
    if (subscriber.status === 'ready') void this.resync();
    if (this.loadedOnce) return;
    await new Promise<void>((resolve) => {
      let timer: TimerHandle = undefined;
      const subscription = this.synced.event(() => {
        this.clock.clearTimeout(timer);
        subscription.dispose();
        resolve();
      });
      timer = this.clock.setTimeout(() => {
        subscription.dispose();
        resolve();
      }, this.timeoutMs);
    });
  }

  /**
   * Publishes one policy's full definition to the fleet: one atomic script increments the version,
   * stores the entry in the hash and announces it. Every instance (this one too, through the
   * channel) then validates and applies it.
   * @param options `validated: true` when the definition was validated against the application's policies (see {@link LiveConfigPublishOptions}).
   * @throws InvalidOptionError when the definition holds something JSON cannot carry (a function, a class instance, `NaN`…), naming its path.
   */
  async publish(name: string, definition: Record<string, unknown>, options: LiveConfigPublishOptions = {}): Promise<LiveConfigEntry> {
    if (typeof name !== 'string' || name === '') throw new InvalidOptionError('name', name, 'a policy name');
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object such as { validated: true }');
    rejectUnknownOptions(options, PUBLISH_OPTIONS, '');
    if (options.validated !== undefined && typeof options.validated !== 'boolean') throw new InvalidOptionError('validated', options.validated, 'a boolean');
    assertJsonData(definition, `policies.${name}`);
    const definitionJson = JSON.stringify(definition);
    const validated = options.validated === true;
    let reply: unknown;
    try {
      reply = await runScript(
        this.client,
        PUBLISH,
        [this.hashKey, this.versionKey, this.epochKey],
        [name, JSON.stringify(name), JSON.stringify(this.instanceId), definitionJson, this.channel, randomUUID(), validated ? '1' : '0'],
        this.timeoutMs,
        this.clock,
      );
    } catch (error) {
      this.storeError('publish', error);
      throw error;
    }
    const [version, epoch] = reply as [number, string];
    const entry = { name, version: Number(version), epoch: String(epoch), origin: this.instanceId, definition: JSON.parse(definitionJson) as Record<string, unknown> };
    return validated ? { ...entry, validated: true } : entry;
  }

  /** Reloads the hash now (done by itself at start and after every reconnection). */
  async sync(): Promise<void> {
    const epochChanges = this.epochChanges;
    const reply = (await runScript(this.client, LOAD, [this.hashKey, this.epochKey], [], this.timeoutMs, this.clock)) as [string | null, string[]];
    // A message of a new epoch came during the round trip: what was read may be from before the
    // loss of data; the reload that change asked for follows.
    if (this.epochChanges !== epochChanges) return;
    const [epoch, fields] = reply;
    if (typeof epoch === 'string' && epoch !== this.epoch) this.enterEpoch(epoch);
    for (let index = 1; index < fields.length; index += 2) this.receive(fields[index]!, false);
  }

  /** The last version this instance saw for a policy (applied or refused), if any. */
  versionOf(name: string): number | undefined {
    return this.versions.get(name);
  }

  /** Stops following the channel and closes the connections the channel opened. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.subscriber?.disconnect();
    this.subscriber = undefined;
    this.client.off('ready', this.onReady);
    if (this.ownsClient) this.client.disconnect();
    else this.client.off('error', this.onClientError);
  }

  /** Subscribes (again) and reloads the hash; on failure, tries again while the channel is open. */
  private resync(): Promise<boolean> {
    if (this.syncing !== undefined) {
      this.resyncAgain = true;
      return this.syncing;
    }
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const subscriber = this.subscriber;
    if (subscriber === undefined || this.closed) return Promise.resolve(false);
    const run = async (): Promise<boolean | 'waiting'> => {
      // A connection that is not up yet starts the reload again with its 'ready' event (a client we
      // own queues nothing meanwhile; one passed in may).
      if (subscriber.status !== 'ready' || (this.ownsClient && this.client.status !== 'ready')) return 'waiting';
      try {
        await withTimeout(subscriber.subscribe(this.channel), this.timeoutMs, this.clock);
      } catch (error) {
        this.storeError('subscribe', error);
        return false;
      }
      try {
        await this.sync();
        return true;
      } catch (error) {
        this.storeError('load', error);
        return false;
      }
    };
    const syncing = run().then((outcome) => {
      this.syncing = undefined;
      const ok = outcome === true;
      if (ok) {
        this.loadedOnce = true;
        this.synced.emit();
      }
      if (this.closed) return ok;
      if (this.resyncAgain) {
        this.resyncAgain = false;
        void this.resync();
      } else if (outcome === false) {
        this.retryTimer = this.clock.setTimeout(() => {
          this.retryTimer = undefined;
          void this.resync();
        }, RESYNC_RETRY_MS);
      }
      return ok;
    });
    this.syncing = syncing;
    return syncing;
  }

  /** One message from the channel or one value of the hash. */
  private receive(raw: string, announced: boolean): void {
    if (this.closed || this.apply === undefined) return;
    let entry: LiveConfigEntry;
    try {
      entry = parseEntry(raw);
    } catch (error) {
      const parsed = looseFields(raw);
      this.refused.emit({ ...parsed, error });
      return;
    }
    // Announcements arrive in order: one of another epoch was numbered by a counter that started
    // again. (The hash's epoch is read with the hash, in sync().)
    const newEpoch = announced && entry.epoch !== undefined && entry.epoch !== this.epoch;
    if (newEpoch) this.enterEpoch(entry.epoch!);
    const seen = this.versions.get(entry.name);
    if (seen !== undefined && entry.version <= seen) return;
    this.versions.set(entry.name, entry.version);
    let changed: boolean;
    try {
      changed = this.apply(entry) !== false;
    } catch (error) {
      this.refused.emit({ name: entry.name, version: entry.version, origin: entry.origin, error });
      // Instances validate before publishing: refusing what one of them published means this one
      // runs another version of the application (a rolling deploy), not that the change is bad.
      // Putting back this instance's definition would make instances that start later load an old one.
      if (entry.validated !== true) this.restore(entry, raw);
      return;
    } finally {
      // Changes made meanwhile to other policies were numbered in the new epoch too.
      if (newEpoch) void this.resync();
    }
    this.inForce.set(entry.name, { raw, epoch: entry.epoch ?? this.epoch });
    if (this.applied.hasListeners) this.applied.emit({ name: entry.name, version: entry.version, origin: entry.origin, changed });
  }

  /**
   * Puts the definition in force back into the hash in place of a refused one (written there by
   * hand), so an instance that starts later loads what the fleet runs rather than the refused one.
   */
  private restore(refused: LiveConfigEntry, refusedRaw: string): void {
    const inForce = this.inForce.get(refused.name);
    // An entry of an earlier epoch would carry a version of a counter that no longer exists.
    if (inForce === undefined || inForce.epoch !== (refused.epoch ?? this.epoch)) return;
    runScript(this.client, RESTORE, [this.hashKey], [refused.name, refusedRaw, inForce.raw], this.timeoutMs, this.clock).catch((error: unknown) => this.storeError('restore', error));
  }

  /** The counter started again: versions seen before mean nothing in the new run. */
  private enterEpoch(epoch: string): void {
    this.epoch = epoch;
    this.epochChanges++;
    this.versions.clear();
  }

  private storeError(operation: LiveConfigStoreErrorEvent['operation'], error: unknown): void {
    if (this.storeErrors.hasListeners) this.storeErrors.emit({ operation, error });
  }

  private readonly onReady = (): void => void this.resync();

  // Connection errors also surface as failed operations; an 'error' listener keeps ioredis from printing each one.
  private readonly onClientError = (): void => undefined;
}

function nameOption(value: unknown, option: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value === '') throw new InvalidOptionError(option, value, 'a non-empty string');
  return value;
}

const ENTRY_FORMAT = 'a JSON object {"version": <integer ≥ 1>, "name": "<policy>", "origin": "<who>", "definition": {…}}';

/** Reads one entry. @throws InvalidOptionError naming the field that is wrong. */
export function parseEntry(raw: string): LiveConfigEntry {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new InvalidOptionError('message', raw, ENTRY_FORMAT, 'live configuration');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidOptionError('message', raw, ENTRY_FORMAT, 'live configuration');
  const { version, name, origin, definition, epoch, validated } = value as Record<string, unknown>;
  if (typeof name !== 'string' || name === '') throw new InvalidOptionError('name', name, 'a policy name', 'live configuration');
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) throw new InvalidOptionError('version', version, 'an integer ≥ 1 (from INCR)', `live configuration of policy "${name}"`);
  if (typeof origin !== 'string') throw new InvalidOptionError('origin', origin, 'a string naming who published the change', `live configuration of policy "${name}"`);
  if (typeof definition !== 'object' || definition === null || Array.isArray(definition)) {
    throw new InvalidOptionError(`policies.${name}`, definition, 'an object of pattern settings', `live configuration v${version} from ${origin}`);
  }
  if (epoch !== undefined && (typeof epoch !== 'string' || epoch === '')) throw new InvalidOptionError('epoch', epoch, 'the non-empty string stored in the epoch key, or nothing', `live configuration of policy "${name}"`);
  if (validated !== undefined && validated !== true) throw new InvalidOptionError('validated', validated, 'true (set by the instances only), or nothing', `live configuration of policy "${name}"`);
  const entry: LiveConfigEntry = { name, version, origin, definition: definition as Record<string, unknown> };
  if (epoch === undefined) return validated === true ? { ...entry, validated } : entry;
  return validated === true ? { ...entry, epoch, validated } : { ...entry, epoch };
}

/** Whatever can be told of a message that is not a valid entry, for the refusal event. */
function looseFields(raw: string): Pick<LiveConfigRefusedEvent, 'name' | 'version' | 'origin'> {
  try {
    const value = JSON.parse(raw) as Record<string, unknown>;
    return {
      name: typeof value?.name === 'string' ? value.name : undefined,
      version: typeof value?.version === 'number' ? value.version : undefined,
      origin: typeof value?.origin === 'string' ? value.origin : undefined,
    };
  } catch {
    return { name: undefined, version: undefined, origin: undefined };
  }
}

const NOT_DATA =
  'JSON data (strings, finite numbers, booleans, null, arrays, plain objects): a policy managed by the live configuration travels to the fleet as JSON; ' +
  'use a method name instead of a fallback function, a key such as "ip", "user" or "global" instead of a key function, and numbers instead of functions of the request';

/**
 * Throws unless `value` is plain JSON data that survives `JSON.stringify` unchanged.
 * @throws InvalidOptionError naming the path of the first value that is not (`policies.payments.fallback`).
 */
export function assertJsonData(value: unknown, path: string): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new InvalidOptionError(path, value, NOT_DATA);
    return;
  }
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) assertJsonData(value[index], `${path}[${index}]`);
    return;
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [key, item] of Object.entries(value)) {
      if (item !== undefined) assertJsonData(item, `${path}.${key}`);
    }
    return;
  }
  throw new InvalidOptionError(path, value, NOT_DATA);
}

/** Whether two JSON values are equal, whatever the order of object keys. */
export function sameJsonData(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((item, index) => sameJsonData(item, other[index]));
  }
  const left = Object.entries(a).filter(([, item]) => item !== undefined);
  const right = b as Record<string, unknown>;
  if (left.length !== Object.values(right).filter((item) => item !== undefined).length) return false;
  return left.every(([key, item]) => sameJsonData(item, right[key]));
}
