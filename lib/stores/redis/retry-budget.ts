import { randomUUID } from 'node:crypto';
import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { toMilliseconds, type Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import {
  floorCapacity,
  resolveRetryBudgetOptions,
  RETRY_BUDGET_SLOTS,
  RetryBudget,
  type ResolvedRetryBudgetOptions,
  type RetryBudgetInstance,
  type RetryBudgetOptions,
  type RetryBudgetStats,
} from '../../policies/retry/retry-budget.js';
import { RETRY_BUDGET_SCRIPT } from './retry-budget.lua.js';
import {
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_KEY_PREFIX,
  hashTag,
  isPermanentRedisError,
  isScriptingClient,
  runScript,
  SharedRedisReplyError,
  type RedisClient,
} from './shared-redis.js';

/** What a {@link RedisRetryBudget} needs besides its options. */
export interface RedisRetryBudgetDependencies {
  /** The ioredis client (`Redis` or `Cluster`). Not closed by the budget. */
  client: RedisClient;
  /** Prefix of the budget's keys, inside its hash tag. @default 'nest-resilience:' */
  keyPrefix?: string;
  /** Local time: the exchange timer and the local fallback. @default systemClock */
  clock?: Clock;
  /** This instance's identity in the fleet (shares are split between the instances exchanging). @default a random UUID */
  instanceId?: string;
  /** Bound on one Redis round trip; past it the local budget decides. @default 500 ms */
  commandTimeout?: Duration;
  /**
   * How often an instance that is receiving calls exchanges with Redis: pushes its calls and
   * retries, gives back what it did not spend and takes a new grant. @default '250ms'
   */
  syncInterval?: Duration;
}

/** Whether the budget decides from its grant of the fleet's budget, or alone (Redis unreachable). */
export type RetryBudgetSource = 'redis' | 'local';

/** Emitted when the budget loses Redis (and its local budget decides) or gets it back. */
export interface RetryBudgetStatusEvent {
  /** The budget's name. */
  readonly budget: string;
  /** `'local'`: Redis failed, the local budget decides; `'redis'`: back to the fleet's budget. */
  readonly source: RetryBudgetSource;
  /** The error that caused the fallback. */
  readonly error?: unknown;
}

/** A fleet budget's counters: this instance's, and the fleet's as of the last exchange. */
export interface RedisRetryBudgetStats extends RetryBudgetStats {
  /** Where decisions come from now. */
  readonly source: RetryBudgetSource;
  /** Instances exchanging with the fleet's budget at the last exchange; -1 before the first. */
  readonly instances: number;
  /** The fleet's calls in the window at the last exchange; -1 before the first. */
  readonly fleetCalls: number;
  /** The fleet's withdrawals (grants included) in the window at the last exchange; -1 before the first. */
  readonly fleetRetries: number;
}

const DEFAULT_SYNC_INTERVAL_MS = 250;

/**
 * A retry budget shared by every instance of a service through Redis, per name: the calls of the
 * whole fleet pay for the retries (and hedges) of the whole fleet, with one floor for the fleet.
 *
 * - **No round trip per call.** An instance counts its calls and retries locally and exchanges
 *   with Redis every `syncInterval` (250 ms) while it is busy: one Lua script adds its calls,
 *   charges its retries, takes back what it left unspent, and grants it a share of the fleet's
 *   balance (the balance divided by the instances exchanging, at least one token), withdrawn in
 *   Redis at once. Between exchanges the instance spends that grant and its own new deposits, and
 *   nothing else, so the fleet never spends more than its budget while Redis answers.
 * - **Staleness.** Deposits made on one instance become spendable by the others at their next
 *   exchange: within `syncInterval` plus a round trip. A grant left unused returns to the fleet at
 *   the instance's next exchange; an instance that stops (without `close`) locks its last grant
 *   until it expires with its slot (at most `window`), and leaves the share count after three
 *   sync intervals. Before its first answer an instance retries only on its own deposits.
 * - **Redis down.** Every round trip is bounded by `commandTimeout` and a client that is not
 *   connected fails at once. While Redis fails, a local {@link RetryBudget} with the same options,
 *   fed with this instance's calls all along, decides; Redis is tried again every sync interval.
 *   No rejection is left unhandled; the timer is `unref`'d (with the system clock) and cleared by
 *   {@link close} and whenever the instance is idle.
 */
export class RedisRetryBudget implements RetryBudgetInstance {
  /** @inheritdoc */
  readonly name: string;
  /** The resolved options. */
  readonly options: ResolvedRetryBudgetOptions;
  /** This instance's identity in the fleet. */
  readonly instanceId: string;
  /** Subscribes to the loss and recovery of Redis. */
  readonly onStatusChange: Event<RetryBudgetStatusEvent>;

  private readonly client: RedisClient;
  private readonly clock: Clock;
  private readonly keys: readonly string[];
  private readonly constantArgs: readonly string[];
  private readonly syncInterval: number;
  private readonly commandTimeout: number;
  private readonly ratio: number;
  private readonly local: RetryBudget;
  private readonly statusEvents = new EventSource<RetryBudgetStatusEvent>();

  // Since the last exchange: calls, the grant and what was spent of it.
  private pendingCalls = 0;
  private ratioGrant = 0;
  private grantSlot = -1;
  private ratioSpent = 0;
  private floorGrant = 0;
  private floorSpent = 0;
  /** Retries the local budget granted while Redis was down, charged to the fleet on recovery. */
  private localSpent = 0;

  private degraded = false;
  private closed = false;
  private timer: TimerHandle | undefined = undefined;
  private syncing: Promise<void> | undefined = undefined;
  private warnedPermanent = false;
  private totals = { calls: 0, retries: 0, refused: 0 };
  private fleet = { instances: -1, calls: -1, retries: -1 };

  /** @throws InvalidOptionError naming the option, the value and what is allowed. */
  constructor(options: RetryBudgetOptions & { name: string }, dependencies: RedisRetryBudgetDependencies) {
    const resolved = resolveRetryBudgetOptions(options);
    if (typeof dependencies !== 'object' || dependencies === null) throw new InvalidOptionError('dependencies', dependencies, '{ client, keyPrefix?, clock?, instanceId?, commandTimeout?, syncInterval? }');
    if (!isScriptingClient(dependencies.client)) throw new InvalidOptionError('client', dependencies.client, 'an ioredis Redis or Cluster instance');
    const keyPrefix = dependencies.keyPrefix ?? DEFAULT_KEY_PREFIX;
    if (typeof keyPrefix !== 'string') throw new InvalidOptionError('keyPrefix', keyPrefix, 'a string');
    const instanceId = dependencies.instanceId ?? randomUUID();
    if (typeof instanceId !== 'string' || instanceId === '') throw new InvalidOptionError('instanceId', instanceId, 'a non-empty string');
    this.name = resolved.name;
    this.options = Object.freeze({ ratio: resolved.ratio, minRetriesPerSecond: resolved.minRetriesPerSecond, window: resolved.window });
    this.instanceId = instanceId;
    this.client = dependencies.client;
    this.clock = dependencies.clock ?? systemClock;
    this.commandTimeout = toMilliseconds(dependencies.commandTimeout ?? DEFAULT_COMMAND_TIMEOUT_MS, 'commandTimeout', { allowZero: false, timer: true });
    this.syncInterval = toMilliseconds(dependencies.syncInterval ?? DEFAULT_SYNC_INTERVAL_MS, 'syncInterval', { allowZero: false, timer: true });
    this.ratio = resolved.ratio;
    this.local = new RetryBudget({ ...this.options, name: this.name }, { clock: this.clock });
    const tag = hashTag(keyPrefix, 'retry-budget', this.name);
    this.keys = [`${tag}:slots`, `${tag}:floor`, `${tag}:instances`];
    this.constantArgs = [
      String(resolved.ratio),
      String(resolved.minRetriesPerSecond),
      String(floorCapacity(resolved.minRetriesPerSecond)),
      String(resolved.window),
      String(RETRY_BUDGET_SLOTS),
      String(3 * this.syncInterval),
    ];
    this.onStatusChange = this.statusEvents.event;
  }

  /** @inheritdoc */
  recordCall(): void {
    this.local.recordCall();
    this.pendingCalls++;
    this.totals.calls++;
    if (this.timer === undefined && !this.closed) this.wake();
  }

  /** @inheritdoc */
  tryAcquire(): boolean {
    // No wake-up here: an exchange gives the grant back first, and a retry follows a call, which woke it.
    if (this.degraded || this.closed) {
      if (this.local.tryAcquire()) {
        this.localSpent++;
        this.totals.retries++;
        return true;
      }
      this.totals.refused++;
      return false;
    }
    if (this.ratioGrant + this.ratio * this.pendingCalls - this.ratioSpent >= 1) {
      this.ratioSpent++;
    } else if (this.floorGrant - this.floorSpent >= 1) {
      this.floorSpent++;
    } else {
      this.totals.refused++;
      return false;
    }
    // The local budget follows this instance's retries too, so it is warm if Redis goes away.
    this.local.tryAcquire();
    this.totals.retries++;
    return true;
  }

  /** This instance's totals, what it could grant now, and the fleet's figures as of the last exchange. */
  stats(): RedisRetryBudgetStats {
    const available =
      this.degraded || this.closed
        ? this.local.stats().available
        : Math.max(0, Math.floor(this.ratioGrant + this.ratio * this.pendingCalls - this.ratioSpent)) + Math.max(0, Math.floor(this.floorGrant - this.floorSpent));
    return {
      ...this.totals,
      available,
      source: this.degraded ? 'local' : 'redis',
      instances: this.fleet.instances,
      fleetCalls: this.fleet.calls,
      fleetRetries: this.fleet.retries,
    };
  }

  /**
   * Exchanges with Redis now, after the exchange in flight if any (tests, and before a planned
   * shutdown); resolves when done, never rejects.
   */
  async sync(): Promise<void> {
    await this.syncing;
    await this.exchangeOnce(!this.closed);
  }

  /**
   * Stops the timer, then gives back the unspent grant and pushes the last counts (bounded by
   * `commandTimeout`; a failure is ignored). Later decisions are the local budget's. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopTimer();
    await this.syncing;
    await this.exchange(false);
  }

  private wake(): void {
    this.timer = this.clock.setTimeout(this.tick, this.syncInterval);
    void this.exchangeOnce(true);
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    if (this.closed) return;
    if (this.pendingCalls === 0 && this.ratioSpent === 0 && this.floorSpent === 0 && this.localSpent === 0) {
      // Nothing happened for a whole interval: give the grant back, leave the share count, and
      // stop until the next call (which exchanges at once).
      if (this.ratioGrant > 0 || this.floorGrant > 0) void this.exchangeOnce(false);
      return;
    }
    this.timer = this.clock.setTimeout(this.tick, this.syncInterval);
    void this.exchangeOnce(true);
  };

  private exchangeOnce(want: boolean): Promise<void> {
    this.syncing ??= this.exchange(want).finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private stopTimer(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** One exchange with Redis; resolves in every case (a failure switches to the local budget). */
  private async exchange(want: boolean): Promise<void> {
    const fromGrant = Math.min(this.ratioSpent, this.ratioGrant);
    const extra = this.ratioSpent - fromGrant + this.localSpent;
    const unused = this.ratioGrant - fromGrant;
    const unusedFloor = Math.max(0, this.floorGrant - this.floorSpent);
    const calls = this.pendingCalls;
    const grantSlot = this.grantSlot;
    // What happens during the round trip is pushed at the next exchange.
    this.pendingCalls = 0;
    this.ratioSpent = 0;
    this.ratioGrant = 0;
    this.floorGrant = 0;
    this.floorSpent = 0;
    this.localSpent = 0;
    if (calls === 0 && extra === 0 && unused === 0 && unusedFloor === 0 && !want) return;
    try {
      const reply = await runScript(
        this.client,
        RETRY_BUDGET_SCRIPT,
        this.keys,
        [this.instanceId, String(calls), String(extra), String(grantSlot), String(unused), String(unusedFloor), ...this.constantArgs, want ? '1' : '0'],
        this.commandTimeout,
        this.clock,
      );
      const [grant, floorGrant, slot, instances, fleetCalls, fleetRetries] = parseReply(reply);
      // Kept even when close() came during the round trip: Redis has charged it already, and the
      // exchange close() makes next gives it back as unused (dropped, it stays locked until its slot expires).
      if (want) {
        this.ratioGrant = grant;
        this.floorGrant = floorGrant;
        this.grantSlot = slot;
      }
      this.fleet = { instances, calls: fleetCalls, retries: fleetRetries };
      if (this.degraded) {
        this.degraded = false;
        if (this.statusEvents.hasListeners) this.statusEvents.emit({ budget: this.name, source: 'redis' });
      }
    } catch (error) {
      // The counts sent may or may not have been applied: they are not sent again (a grant lost
      // that way expires with its slot).
      if (isPermanentRedisError(error) && !this.warnedPermanent) {
        this.warnedPermanent = true;
        process.emitWarning(`nest-resilience: the retry budget "${this.name}" cannot use Redis, its local budget decides: ${String((error as Error)?.message ?? error)}`, 'RetryBudgetWarning');
      }
      if (!this.degraded) {
        this.degraded = true;
        if (this.statusEvents.hasListeners) this.statusEvents.emit({ budget: this.name, source: 'local', error });
      }
    }
  }
}

function parseReply(reply: unknown): [number, number, number, number, number, number] {
  if (!Array.isArray(reply) || reply.length !== 6) throw new SharedRedisReplyError('retry-budget', reply);
  const values = reply.map((value: unknown) => Number(value)) as [number, number, number, number, number, number];
  if (values.some((value) => !Number.isFinite(value) || value < 0)) throw new SharedRedisReplyError('retry-budget', reply);
  return values;
}
