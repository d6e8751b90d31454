import { systemClock, type Clock } from '../../core/clock.js';
import type { PolicyDependencies } from '../../core/dependencies.js';
import { toMilliseconds, type Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { numberOption, rejectUnknownOptions } from '../../core/validate.js';

/** Options of a retry budget: how many retries (and hedges) base traffic pays for. */
export interface RetryBudgetOptions {
  /**
   * Retries allowed per call: each call (a first attempt) deposits this many tokens and each retry
   * withdraws one, so `0.2` lets retries add at most 20 % to the traffic. A number ≥ 0 and ≤ 1000.
   * @default 0.2
   */
  ratio?: number;
  /**
   * Retries allowed per second whatever the traffic, so a service with few calls can still retry:
   * a token bucket refilled at this rate that holds one second's worth (at least one token) and
   * starts full. A number ≥ 0; `0` turns the floor off.
   * @default 10
   */
  minRetriesPerSecond?: number;
  /**
   * How long a deposit (and a withdrawal) counts, to a tenth of it: retries may spend the
   * deposits of the calls made within the last `window`, no older ones.
   * @default '10s'
   */
  window?: Duration;
}

/**
 * A budget retries and hedges draw from. {@link RetryBudget} keeps it in process; a store shared by
 * a fleet (`RedisStore.createRetryBudget`) keeps one per name for every instance.
 */
export interface RetryBudgetInstance {
  /** The budget's name, used in events and logs. */
  readonly name: string;
  /** Records a first attempt: base traffic, which deposits `ratio` tokens. */
  recordCall(): void;
  /** Whether a retry (or a hedge) may go now; `true` withdraws one token. */
  tryAcquire(): boolean | PromiseLike<boolean>;
  /** Releases what the budget holds (timers, a last exchange with its store). Idempotent. */
  close?(): unknown;
}

/** A budget's counters: totals since it was built, and what it could grant now. */
export interface RetryBudgetStats {
  /** Calls recorded (first attempts). */
  calls: number;
  /** Retries (and hedges) granted. */
  retries: number;
  /** Retries (and hedges) refused. */
  refused: number;
  /** Retries that would be granted now, one after the other, with no call in between. */
  available: number;
}

/** The options of a retry budget after validation, durations in milliseconds. */
export interface ResolvedRetryBudgetOptions {
  /** Tokens deposited per call. */
  readonly ratio: number;
  /** The floor's refill rate, tokens per second. */
  readonly minRetriesPerSecond: number;
  /** How long a deposit counts, in ms. */
  readonly window: number;
}

const KNOWN_OPTIONS: readonly string[] = ['ratio', 'minRetriesPerSecond', 'window', 'name'];
/** The window is kept as this many slots: deposits expire a slot at a time. */
export const RETRY_BUDGET_SLOTS = 10;

/**
 * Validates retry budget options (the `name` key included, when allowed) and applies the defaults.
 * @throws InvalidOptionError naming the option, the value and what is allowed.
 */
export function resolveRetryBudgetOptions(options: RetryBudgetOptions & { name?: string }, scope = ''): ResolvedRetryBudgetOptions & { name: string } {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError(scope || 'budget', options, 'an object of retry budget options');
  const prefix = scope ? `${scope}.` : '';
  rejectUnknownOptions(options, KNOWN_OPTIONS, scope);
  const name = options.name ?? 'default';
  if (typeof name !== 'string' || name === '') throw new InvalidOptionError(`${prefix}name`, name, 'a non-empty string');
  return {
    name,
    ratio: numberOption(options.ratio, `${prefix}ratio`, 0.2, 0, 1000),
    minRetriesPerSecond: numberOption(options.minRetriesPerSecond, `${prefix}minRetriesPerSecond`, 10, 0, 1e9),
    window: toMilliseconds(options.window ?? 10_000, `${prefix}window`, { allowZero: false, timer: true }),
  };
}

/** The floor bucket's capacity: one second's worth, and at least one token so a slow floor can grant. */
export function floorCapacity(minRetriesPerSecond: number): number {
  return minRetriesPerSecond === 0 ? 0 : Math.max(1, minRetriesPerSecond);
}

/**
 * An in-process retry budget, modelled on Finagle's: every call deposits `ratio` tokens that count
 * for `window`, every retry withdraws one; when the deposits run out a floor of
 * `minRetriesPerSecond` still lets retries through. Over any run of `T` seconds the retries it
 * grants are at most `ratio × calls + minRetriesPerSecond × T + max(1, minRetriesPerSecond)` (the
 * last term is the floor's one-second burst), so retries cannot multiply an outage.
 *
 * Recording a call costs a clock reading and two additions; no timer, no allocation.
 *
 * @example
 * const budget = new RetryBudget({ ratio: 0.1, minRetriesPerSecond: 5 });
 * const retry = new RetryPolicy({ maxAttempts: 4, budget });
 */
export class RetryBudget implements RetryBudgetInstance {
  /** @inheritdoc */
  readonly name: string;
  /** The resolved options. */
  readonly options: ResolvedRetryBudgetOptions;

  private readonly clock: Clock;
  private readonly ratio: number;
  private readonly slotMs: number;
  private readonly floorRate: number;
  private readonly floorCap: number;
  // A ring of slots: calls and withdrawals per slot, and their sums over the live slots.
  private readonly slotCalls = new Float64Array(RETRY_BUDGET_SLOTS);
  private readonly slotRetries = new Float64Array(RETRY_BUDGET_SLOTS);
  private windowCalls = 0;
  private windowRetries = 0;
  /** The slot number (time / slotMs) the ring's current position holds. */
  private slot: number;
  private floorTokens: number;
  private floorAt: number;
  private totalCalls = 0;
  private totalRetries = 0;
  private totalRefused = 0;

  /**
   * @param options see {@link RetryBudgetOptions}; `name` names it in events and logs (default `'default'`).
   * @param dependencies the clock the window and the floor follow.
   * @throws InvalidOptionError when an option is unknown or out of range.
   */
  constructor(options: RetryBudgetOptions & { name?: string } = {}, dependencies: PolicyDependencies = {}) {
    const resolved = resolveRetryBudgetOptions(options);
    this.name = resolved.name;
    this.options = Object.freeze({ ratio: resolved.ratio, minRetriesPerSecond: resolved.minRetriesPerSecond, window: resolved.window });
    this.clock = dependencies.clock ?? systemClock;
    this.ratio = resolved.ratio;
    this.slotMs = resolved.window / RETRY_BUDGET_SLOTS;
    this.floorRate = resolved.minRetriesPerSecond / 1000;
    this.floorCap = floorCapacity(resolved.minRetriesPerSecond);
    const now = this.clock.now();
    this.slot = Math.floor(now / this.slotMs);
    this.floorTokens = this.floorCap;
    this.floorAt = now;
  }

  /** @inheritdoc */
  recordCall(): void {
    const index = this.advance(this.clock.now());
    this.slotCalls[index]!++;
    this.windowCalls++;
    this.totalCalls++;
  }

  /** @inheritdoc */
  tryAcquire(): boolean {
    const now = this.clock.now();
    const index = this.advance(now);
    // Deposits first: the floor is kept for when traffic is too thin to pay for retries.
    if (this.ratio * this.windowCalls - this.windowRetries >= 1) {
      this.slotRetries[index]!++;
      this.windowRetries++;
      this.totalRetries++;
      return true;
    }
    if (this.refill(now) >= 1) {
      this.floorTokens--;
      this.totalRetries++;
      return true;
    }
    this.totalRefused++;
    return false;
  }

  /** Totals since the budget was built, and the retries it could grant now. */
  stats(): RetryBudgetStats {
    const now = this.clock.now();
    this.advance(now);
    const fromDeposits = Math.max(0, Math.floor(this.ratio * this.windowCalls - this.windowRetries));
    return { calls: this.totalCalls, retries: this.totalRetries, refused: this.totalRefused, available: fromDeposits + Math.floor(this.refill(now)) };
  }

  /** Expires the slots older than the window at `now`; returns the ring index of the current slot. */
  private advance(now: number): number {
    const slot = Math.floor(now / this.slotMs);
    let current = this.slot;
    if (slot > current) {
      const slots = RETRY_BUDGET_SLOTS;
      // A gap longer than the window clears the whole ring once, not once per missed slot.
      const steps = slot - current < slots ? slot - current : slots;
      for (let step = 0; step < steps; step++) {
        current++;
        const index = current % slots;
        this.windowCalls -= this.slotCalls[index]!;
        this.windowRetries -= this.slotRetries[index]!;
        this.slotCalls[index] = 0;
        this.slotRetries[index] = 0;
      }
      this.slot = slot;
      if (steps === slots) {
        // Sums rebuilt from zero: no rounding drift survives a quiet spell.
        this.windowCalls = 0;
        this.windowRetries = 0;
      }
    }
    // A clock that goes back (a FakeClock set by hand) keeps writing to the newest slot.
    return this.slot % RETRY_BUDGET_SLOTS;
  }

  private refill(now: number): number {
    const elapsed = now - this.floorAt;
    if (elapsed > 0) {
      const tokens = this.floorTokens + elapsed * this.floorRate;
      this.floorTokens = tokens < this.floorCap ? tokens : this.floorCap;
      this.floorAt = now;
    }
    return this.floorTokens;
  }
}

/** Whether `value` looks like a budget instance (rather than budget options). */
export function isRetryBudgetInstance(value: unknown): value is RetryBudgetInstance {
  return typeof value === 'object' && value !== null && typeof (value as RetryBudgetInstance).tryAcquire === 'function' && typeof (value as RetryBudgetInstance).recordCall === 'function';
}

/**
 * The budget a policy draws from: the instance given, a new {@link RetryBudget} for options, or
 * `undefined` without one.
 * @throws InvalidOptionError when `budget` is neither.
 */
export function resolveRetryBudget(budget: unknown, dependencies: PolicyDependencies, option = 'budget'): RetryBudgetInstance | undefined {
  if (budget === undefined) return undefined;
  if (isRetryBudgetInstance(budget)) return budget;
  if (typeof budget !== 'object' || budget === null || Array.isArray(budget)) {
    throw new InvalidOptionError(option, budget, 'a retry budget (RetryBudget, store.createRetryBudget) or { ratio?, minRetriesPerSecond?, window? }');
  }
  try {
    return new RetryBudget(budget as RetryBudgetOptions, dependencies);
  } catch (error) {
    if (error instanceof InvalidOptionError) throw error.withContext('', option);
    throw error;
  }
}
