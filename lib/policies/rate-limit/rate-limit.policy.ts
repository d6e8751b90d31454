import { systemClock, type Clock } from '../../core/clock.js';
import { NO_CONTEXT, type CallContext, type Task } from '../../core/context.js';
import type { PolicyDependencies, PolicyMode } from '../../core/dependencies.js';
import { toMilliseconds } from '../../core/duration.js';
import { describeValue, InvalidOptionError, OperationAbortedError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { executeWith, invoke, type Policy } from '../../core/policy.js';
import { enumOption, integerOption, rejectUnknownOptions } from '../../core/validate.js';
import { MemoryStore } from '../../stores/memory/memory.store.js';
import type { ConsumeMode, LimitSpec, ResilienceStore } from '../../stores/store.interface.js';
import { RateLimitExceededError } from './rate-limit.error.js';
import type { RateLimitAlgorithm, RateLimitDecision, RateLimitOptions, StoreFailurePolicy } from './rate-limit.options.js';

/** What a {@link RateLimitPolicy} gets from outside besides its limits. */
export interface RateLimitDependencies extends PolicyDependencies {
  /** Where the state lives. @default a new MemoryStore */
  store?: ResilienceStore;
  /** The limiter's name (events, errors, registries). @default the first limit's `name`, else 'default' */
  name?: string;
  /** The key of calls through `execute`/`run` (`runWithKey` takes its own). @default 'global' */
  key?: string;
}

/** A rate limiter's options after validation. */
export interface ResolvedRateLimitOptions {
  /** The limits, all of which a call must pass; durations in milliseconds. */
  readonly limits: readonly LimitSpec[];
  /** Units a call costs unless the caller says otherwise. */
  readonly cost: number;
  /** `'shadow'`: decisions are made, counted and emitted, but a refused call still runs. */
  readonly mode: PolicyMode;
  /** Milliseconds a refused call may wait for room before it is rejected; 0: reject at once. */
  readonly maxWait: number;
  /** The store-failure policy asked for, if any (applied by stores that can fail). */
  readonly onStoreError: StoreFailurePolicy | undefined;
}

/** Emitted for every decision that charges (`'consume'`) or looks ahead (`'peek'`). */
export interface RateLimitDecisionEvent {
  /** The limiter's name. */
  readonly limiter: string;
  /** The key decided. */
  readonly key: string;
  /** Units asked for. */
  readonly cost: number;
  /** The store's answer. */
  readonly decision: RateLimitDecision;
  /** Whether the limiter is in shadow mode: a refused call was let through. */
  readonly shadow: boolean;
  /** `'consume'` (charged when allowed) or `'peek'` (charged nothing). */
  readonly mode: 'consume' | 'peek';
}

/** Counters of a {@link RateLimitPolicy} (charging decisions only). */
export interface RateLimitStats {
  /** Decisions that admitted a call. */
  admitted: number;
  /** Decisions that refused a call (in shadow mode the call ran anyway). */
  rejected: number;
}

const KNOWN_OPTIONS = ['name', 'algorithm', 'limit', 'window', 'burst', 'cost', 'mode', 'maxWait', 'onStoreError'] as const;
const ALGORITHM_NAMES: readonly RateLimitAlgorithm[] = ['token-bucket', 'sliding-window-log', 'sliding-window-counter', 'fixed-window', 'gcra'];
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
const POLICY_LEVEL_OPTIONS = ['cost', 'mode', 'maxWait', 'onStoreError'] as const;
type PolicyLevelOption = (typeof POLICY_LEVEL_OPTIONS)[number];

/**
 * Limits how often a key may call: `limit` units per `window`, under one of five algorithms, with
 * several limits checked and charged together (e.g. 10/s and 1000/h: all must pass, a refused
 * call consumes none). State lives in a {@link ResilienceStore}, in memory by default.
 *
 * `execute` / `run` decide for the policy's key, `runWithKey` for any key; a refused call
 * rejects with {@link RateLimitExceededError} without running, unless the policy is in shadow
 * mode, or `maxWait` lets it wait for room (outbound use).
 *
 * `cost`, `mode`, `maxWait` and `onStoreError` belong to the whole limiter: write them on the
 * first limit (any other limit stating them must agree).
 *
 * @example
 * const limiter = new RateLimitPolicy([
 *   { name: 'second', algorithm: 'gcra', limit: 10, window: '1s' },
 *   { name: 'hour', limit: 1000, window: '1h' },
 * ]);
 * const decision = limiter.decide(clientIp); // synchronous with the memory store
 */
export class RateLimitPolicy implements Policy {
  /** The resolved options. */
  readonly options: ResolvedRateLimitOptions;
  /** The limiter's name. */
  readonly name: string;
  /** Where the state lives. */
  readonly store: ResilienceStore;
  /** The key of calls through `execute` / `run`. */
  readonly key: string;
  private readonly clock: Clock;
  /** The store when it is a plain MemoryStore (not a subclass that may override `consume`): see `runWithKey`. */
  private readonly memory: MemoryStore | undefined;
  private readonly shadow: boolean;
  private readonly decisions = new EventSource<RateLimitDecisionEvent>();
  private admitted = 0;
  private rejected = 0;
  /** Subscribes to decisions (`'consume'` and `'peek'`; not refunds). */
  readonly onDecision: Event<RateLimitDecisionEvent> = this.decisions.event;

  /**
   * @param limits one limit or several (all must pass).
   * @throws InvalidOptionError naming the option (e.g. `rateLimit[1].limit`), the value and what is allowed.
   */
  constructor(limits: RateLimitOptions | readonly RateLimitOptions[], dependencies: RateLimitDependencies = {}) {
    const resolved = resolveOptions(limits);
    this.options = resolved.options;
    this.shadow = resolved.options.mode === 'shadow';
    const name = dependencies.name ?? resolved.firstName ?? 'default';
    if (typeof name !== 'string' || name === '') throw new InvalidOptionError('name', name, 'a non-empty string');
    this.name = name;
    const key = dependencies.key ?? 'global';
    if (typeof key !== 'string') throw new InvalidOptionError('key', key, 'a string');
    this.key = key;
    this.store = dependencies.store ?? new MemoryStore();
    this.memory = Object.getPrototypeOf(this.store) === MemoryStore.prototype ? (this.store as MemoryStore) : undefined;
    this.clock = dependencies.clock ?? systemClock;
  }

  /**
   * Decides a call of `cost` units for `key`, charging every limit when all have room.
   * Synchronous when the store is (the memory store).
   * @throws RangeError when `cost` is not an integer ≥ 1.
   */
  decide(key: string, cost: number = this.options.cost): RateLimitDecision | Promise<RateLimitDecision> {
    return this.ask(key, cost, 'consume');
  }

  /** Tells whether a call of `cost` units for `key` would pass now, charging nothing. */
  peek(key: string, cost: number = this.options.cost): RateLimitDecision | Promise<RateLimitDecision> {
    return this.ask(key, cost, 'peek');
  }

  /** Gives `cost` units back to `key` (never beyond full), e.g. for a call that should not have counted. */
  refund(key: string, cost: number = this.options.cost): RateLimitDecision | Promise<RateLimitDecision> {
    return this.ask(key, cost, 'refund');
  }

  /** Forgets the state of `key`: its limits are full again. */
  reset(key: string): void | Promise<void> {
    return this.store.reset(key, this.options.limits);
  }

  /** Counters of charging decisions since the limiter was built. */
  stats(): RateLimitStats {
    return { admitted: this.admitted, rejected: this.rejected };
  }

  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((ctx) => this.run(fn, ctx), context);
  }

  /** Runs `fn` if the policy's key has room (see {@link runWithKey}). */
  run<T>(fn: Task<T>, context: CallContext | undefined): Promise<T> {
    return this.runWithKey(this.key, fn, context);
  }

  /**
   * Decides one call (the limiter's default cost) for `key`, then runs `fn`. A refused call
   * rejects with {@link RateLimitExceededError} without running — after waiting up to `maxWait`
   * for room when that is set — unless the limiter is in shadow mode.
   */
  runWithKey<T>(key: string, fn: Task<T>, context: CallContext | undefined): Promise<T> {
    if (context !== undefined && context.aborted) return Promise.reject(abortError(context.abortReason));
    let answer: RateLimitDecision | Promise<RateLimitDecision>;
    try {
      const { limits, cost } = this.options;
      const now = this.clock.now();
      const memory = this.memory;
      if (memory !== undefined && !this.decisions.hasListeners) {
        // Admitted with nobody listening, the decision would be dropped: none is built. A refusal
        // changed nothing, so a peek at the same time gives the decision it carries.
        if (memory.tryConsume(key, limits, cost, now)) {
          this.admitted++;
          return invoke(fn, context ?? NO_CONTEXT);
        }
        answer = memory.consume(key, limits, cost, 'peek', now);
      } else {
        answer = this.store.consume(key, limits, cost, 'consume', now, this.options.onStoreError);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    if (isPromiseLike(answer)) return answer.then((decision) => this.admit(key, fn, context, decision));
    return this.admit(key, fn, context, answer);
  }

  private ask(key: string, cost: number, mode: ConsumeMode): RateLimitDecision | Promise<RateLimitDecision> {
    if (cost !== this.options.cost && !(Number.isInteger(cost) && cost >= 1)) {
      throw new RangeError(`Rate limit "${this.name}": cost must be an integer ≥ 1, got ${String(cost)}`);
    }
    const answer = this.store.consume(key, this.options.limits, cost, mode, this.clock.now(), this.options.onStoreError);
    if (mode === 'refund') return answer;
    if (isPromiseLike(answer)) return answer.then((decision) => this.record(key, cost, decision, mode));
    return this.record(key, cost, answer, mode);
  }

  private record(key: string, cost: number, decision: RateLimitDecision, mode: 'consume' | 'peek'): RateLimitDecision {
    if (mode === 'consume') {
      if (decision.allowed) this.admitted++;
      else this.rejected++;
    }
    if (this.decisions.hasListeners) this.decisions.emit({ limiter: this.name, key, cost, decision, shadow: this.shadow, mode });
    return decision;
  }

  private admit<T>(key: string, fn: Task<T>, context: CallContext | undefined, decision: RateLimitDecision): Promise<T> {
    this.record(key, this.options.cost, decision, 'consume');
    if (decision.allowed || this.shadow) return invoke(fn, context ?? NO_CONTEXT);
    if (this.options.maxWait > 0 && decision.retryAfterMs !== undefined) return this.waitForRoom(key, fn, context, decision);
    return Promise.reject(new RateLimitExceededError(this.name, decision));
  }

  /** Outbound use: waits for room while the wait fits in `maxWait` and the call's deadline. */
  private async waitForRoom<T>(key: string, fn: Task<T>, context: CallContext | undefined, refused: RateLimitDecision): Promise<T> {
    const clock = this.clock;
    const giveUpAt = clock.now() + this.options.maxWait;
    const deadline = context === undefined ? Infinity : context.deadline;
    let decision = refused;
    for (;;) {
      const retryAfter = decision.retryAfterMs;
      // Timers tick in whole milliseconds: wait at least until the reported time.
      const wait = retryAfter === undefined ? Infinity : Math.max(1, Math.ceil(retryAfter));
      const wakeAt = clock.now() + wait;
      // Waking at the deadline would leave the call no time to run.
      if (wakeAt > giveUpAt || wakeAt >= deadline) throw new RateLimitExceededError(this.name, decision);
      await delay(clock, wait, context);
      decision = this.record(key, this.options.cost, await this.store.consume(key, this.options.limits, this.options.cost, 'consume', clock.now(), this.options.onStoreError), 'consume');
      if (decision.allowed) return invoke(fn, context ?? NO_CONTEXT);
    }
  }
}

function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown }).then === 'function';
}

function abortError(reason: unknown): unknown {
  return reason === undefined ? new OperationAbortedError() : reason;
}

/** Sleeps on the policy's clock; an abort clears the timer and rejects with the abort reason. */
function delay(clock: Clock, ms: number, context: CallContext | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    // The shared inert context never aborts: a listener on it would only pile up.
    if (context === undefined || context === NO_CONTEXT) {
      clock.setTimeout(resolve, ms);
      return;
    }
    let detach: (() => void) | undefined;
    const timer = clock.setTimeout(() => {
      detach?.();
      resolve();
    }, ms);
    detach = context.onAbort((reason) => {
      clock.clearTimeout(timer);
      reject(abortError(reason));
    });
  });
}

function resolveOptions(input: RateLimitOptions | readonly RateLimitOptions[]): { options: ResolvedRateLimitOptions; firstName: string | undefined } {
  const list = Array.isArray(input) ? (input as readonly RateLimitOptions[]) : [input as RateLimitOptions];
  if (list.length === 0) throw new InvalidOptionError('rateLimit', input, 'at least one limit');
  const pathOf = (index: number): string => (Array.isArray(input) ? `rateLimit[${index}]` : 'rateLimit');
  const limits: LimitSpec[] = [];
  const shared: Partial<Record<PolicyLevelOption, { value: unknown; path: string }>> = {};
  for (let index = 0; index < list.length; index++) {
    const options = list[index];
    const path = pathOf(index);
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError(path, options, 'a limit such as { limit: 100, window: "1m" }');
    rejectUnknownOptions(options, KNOWN_OPTIONS, path);
    const name = options.name ?? (index === 0 ? 'default' : `default-${index}`);
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
      throw new InvalidOptionError(`${path}.name`, name, '1 to 64 letters, digits, "_", "-" or "."');
    }
    if (limits.some((spec) => spec.name === name)) throw new InvalidOptionError(`${path}.name`, name, 'a name no other limit of this rate limiter uses');
    const algorithm = enumOption(options.algorithm, `${path}.algorithm`, 'sliding-window-counter', ALGORITHM_NAMES);
    if (options.limit === undefined) throw new InvalidOptionError(`${path}.limit`, undefined, 'an integer ≥ 1 (units per window)');
    const limit = integerOption(options.limit, `${path}.limit`, 1, 1);
    const windowMs = toMilliseconds(options.window ?? 60_000, `${path}.window`, { allowZero: false });
    let burst = limit;
    if (options.burst !== undefined) {
      if (algorithm !== 'token-bucket' && algorithm !== 'gcra') {
        throw new InvalidOptionError(`${path}.burst`, options.burst, `no burst with algorithm '${algorithm}'; burst applies to 'token-bucket' and 'gcra'`);
      }
      burst = integerOption(options.burst, `${path}.burst`, limit, 1);
    }
    limits.push(Object.freeze({ name, algorithm, limit, windowMs, burst }));
    const values: Record<PolicyLevelOption, unknown> = {
      cost: options.cost === undefined ? undefined : integerOption(options.cost, `${path}.cost`, 1, 1),
      mode: options.mode === undefined ? undefined : enumOption<PolicyMode>(options.mode, `${path}.mode`, 'enforce', ['enforce', 'shadow']),
      maxWait: options.maxWait === undefined ? undefined : toMilliseconds(options.maxWait, `${path}.maxWait`, { timer: true }),
      onStoreError:
        options.onStoreError === undefined
          ? undefined
          : enumOption<StoreFailurePolicy>(options.onStoreError, `${path}.onStoreError`, 'fail-open', ['fail-open', 'fail-closed', 'local']),
    };
    for (const option of POLICY_LEVEL_OPTIONS) {
      const value = values[option];
      if (value === undefined) continue;
      const first = shared[option];
      if (first === undefined) {
        shared[option] = { value, path: `${path}.${option}` };
      } else if (first.value !== value) {
        throw new InvalidOptionError(`${path}.${option}`, options[option], `the same value as ${first.path} (${describeValue(first.value)}): ${option} applies to the whole rate limiter`);
      }
    }
  }
  const options: ResolvedRateLimitOptions = Object.freeze({
    limits: Object.freeze(limits),
    cost: (shared.cost?.value as number | undefined) ?? 1,
    mode: (shared.mode?.value as PolicyMode | undefined) ?? 'enforce',
    maxWait: (shared.maxWait?.value as number | undefined) ?? 0,
    onStoreError: shared.onStoreError?.value as StoreFailurePolicy | undefined,
  });
  return { options, firstName: list[0]!.name };
}
