import { AsyncResource } from 'node:async_hooks';
import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { abortReasonOf, NO_CONTEXT, settleOnAbort, type CallContext, type Task } from '../../core/context.js';
import type { PolicyDependencies } from '../../core/dependencies.js';
import { toMilliseconds } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { executeWith, type Policy } from '../../core/policy.js';
import { integerOption, rejectUnknownOptions } from '../../core/validate.js';
import { BulkheadRejectedError, type BulkheadRejectReason } from './bulkhead.error.js';
import type { BulkheadOptions, BulkheadStats } from './bulkhead.options.js';

/** A bulkhead's options after validation: defaults applied, the queue timeout in milliseconds. */
export interface ResolvedBulkheadOptions {
  /** The name used in events and errors. */
  readonly name: string;
  /** Calls running at once. */
  readonly maxConcurrent: number;
  /** Calls waiting for a permit. */
  readonly maxQueue: number;
  /** Milliseconds; `undefined`: a queued call waits until it gets a permit or is aborted. */
  readonly queueTimeout: number | undefined;
}

/** Emitted when the bulkhead refuses a call. */
export interface BulkheadRejectEvent {
  /** The bulkhead's name. */
  bulkhead: string;
  /** Why the call was refused. */
  reason: BulkheadRejectReason;
  /** Calls running at that moment. */
  active: number;
  /** Calls queued at that moment. */
  queued: number;
}

/** Emitted when a call enters the queue to wait for a permit. */
export interface BulkheadQueueEvent {
  /** The bulkhead's name. */
  bulkhead: string;
  /** Calls running at that moment. */
  active: number;
  /** Calls queued at that moment, this one included. */
  queued: number;
}

const KNOWN_OPTIONS = ['name', 'maxConcurrent', 'maxQueue', 'queueTimeout'] as const;

/** A call's priority; a `NaN` a user's function returned counts as `'normal'`, so the queue's order stays total. */
function priorityOf(context: CallContext): number {
  const priority = context.priority;
  return priority === priority ? priority : 1;
}

/** Where a queued call stands; shared with the distributed bulkhead, whose queue holds the same waiters. */
export const QUEUED = 0;
export const RUNNING = 1;
export const DONE = 2;

/**
 * The waiters of one priority, oldest first: a doubly linked list, so a waiter that gives up
 * leaves in O(1). Internal.
 */
export class WaiterLevel {
  head: Waiter | undefined = undefined;
  tail: Waiter | undefined = undefined;

  constructor(public priority: number) {}
}

/**
 * A queued call: a node of its priority level's doubly linked list, so a waiter that gives up
 * leaves in O(1). Internal; the distributed bulkhead queues the same waiters (in a Set, leaving
 * `prev`/`next`/`level` unused).
 */
export class Waiter<T = unknown> {
  prev: Waiter | undefined = undefined;
  next: Waiter | undefined = undefined;
  level: WaiterLevel | undefined = undefined;
  state = QUEUED;
  timer: TimerHandle | undefined = undefined;
  removeAbortListener: (() => void) | undefined = undefined;
  /**
   * The caller's async context. A permit is handed over from inside another call's settlement,
   * whose AsyncLocalStorage stores (our deadline, a user's request context) must not leak into
   * this call's function.
   */
  readonly scope = new AsyncResource('nest-resilience.BulkheadWaiter');

  constructor(
    readonly fn: Task<T>,
    readonly context: CallContext,
    readonly resolve: (value: T) => void,
    readonly reject: (error: unknown) => void,
  ) {}
}

/**
 * Caps how many calls run at once (`maxConcurrent`), with a bounded queue (`maxQueue`) whose
 * waiters give up after `queueTimeout` or when their call is aborted; any call beyond that is
 * refused at once with {@link BulkheadRejectedError} (backpressure).
 *
 * The queue serves the highest {@link CallContext.priority} first, first in first out within a
 * priority. A call that finds the queue full displaces the newest waiter of the lowest priority
 * queued, if that priority is lower than its own: the displaced waiter is refused with reason
 * `'displaced'`. Waiters sit in one linked list per priority present, kept in a sorted array, so
 * queueing and dequeuing cost O(1) when every call has the same priority and O(log k) for k
 * priorities queued at once (plus moving k pointers when a priority appears or empties).
 *
 * A permit is held while the function runs, and released exactly once when its promise settles
 * (or when it throws synchronously). When a running call is aborted, its caller is settled with
 * the abort reason at once, but the permit stays taken until the function really settles: the
 * work still consumes the resource the bulkhead protects, and a freed permit would let more work
 * pile onto it than `maxConcurrent`. (A context with a deadline is left to the TimeoutPolicy that
 * owns it, which settles the caller itself.) A waiter that gives up (queue timeout, abort) leaves
 * the queue at once, so its slot is free immediately, and is never handed a permit. A call whose
 * context is already aborted never starts. A waiter handed a permit runs in its own caller's
 * async context (AsyncLocalStorage), not in that of the call that released the permit.
 *
 * A call that finds a free permit allocates no timer and no closure, and adds an abort listener
 * only when its context can abort and has no deadline.
 *
 * @example
 * const bulkhead = new BulkheadPolicy({ maxConcurrent: 4, maxQueue: 20, queueTimeout: '1s' });
 * const quote = await bulkhead.execute(() => pricing.quote(sku));
 */
export class BulkheadPolicy implements Policy {
  /** The bulkhead's name, used in events and errors. */
  readonly name: string;
  /** The resolved options. */
  readonly options: ResolvedBulkheadOptions;

  /** The clock of queue timeouts (and of latency, in the adaptive bulkhead). */
  protected readonly clock: Clock;
  /**
   * Permits: separate from `options` so that `close()` can refuse every later call without a
   * check on the hot path, and so that the adaptive bulkhead can move it. A release hands its
   * permit on only while `active` does not exceed it; {@link admitWaiting} fills a raised limit.
   */
  protected permits: number;
  private queueLimit: number;
  private readonly queueTimeout: number | undefined;
  /** Set by {@link close}. */
  protected closed = false;

  /** Permits taken. */
  protected active = 0;
  private queued = 0;
  private rejectedCount = 0;
  private timedOutCount = 0;
  private abortedCount = 0;
  // Ascending priority: the next waiter served is the head of the last level.
  private readonly levels: WaiterLevel[] = [];
  // An emptied level kept for reuse: a queue that keeps filling and emptying at one priority
  // allocates no level per call.
  private spareLevel: WaiterLevel | undefined = undefined;
  private releasing = false;
  private deferredReleases = 0;

  private readonly rejectSource = new EventSource<BulkheadRejectEvent>();
  private readonly queueSource = new EventSource<BulkheadQueueEvent>();
  /** Subscribes to refusals: full, queue timeout, displaced, closed. */
  readonly onReject: Event<BulkheadRejectEvent> = this.rejectSource.event;
  /** Subscribes to calls entering the queue. */
  readonly onQueue: Event<BulkheadQueueEvent> = this.queueSource.event;

  // Bound once, so that settling a call allocates no closure.
  private readonly releaseAndReturn = <T>(value: T): T => {
    this.release();
    return value;
  };
  private readonly releaseAndThrow = (error: unknown): never => {
    this.release();
    throw error;
  };

  /**
   * @param options see {@link BulkheadOptions}; every field is optional.
   * @param dependencies the clock for queue timeouts.
   * @throws InvalidOptionError when an option is unknown or out of range.
   */
  constructor(options: BulkheadOptions = {}, dependencies: PolicyDependencies = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('bulkhead', options, 'an options object');
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    const name = options.name ?? 'default';
    if (typeof name !== 'string' || name === '') throw new InvalidOptionError('name', name, 'a non-empty string');
    const maxConcurrent = integerOption(options.maxConcurrent, 'maxConcurrent', 10, 1);
    const maxQueue = integerOption(options.maxQueue, 'maxQueue', 0, 0);
    const queueTimeout = options.queueTimeout === undefined ? undefined : toMilliseconds(options.queueTimeout, 'queueTimeout', { timer: true });
    this.name = name;
    this.options = Object.freeze({ name, maxConcurrent, maxQueue, queueTimeout });
    this.permits = maxConcurrent;
    this.queueLimit = maxQueue;
    this.queueTimeout = queueTimeout;
    this.clock = dependencies.clock ?? systemClock;
  }

  /** Runs `fn` under the bulkhead; see {@link Policy.execute}. */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((ctx) => this.run(fn, ctx), context);
  }

  /**
   * Runs `fn` once a permit is free: at once, after waiting in the queue, or never (refused).
   *
   * @returns the function's outcome; a {@link BulkheadRejectedError} when refused; the abort
   *   reason when the call is aborted while it waits (or, without a deadline, while it runs).
   */
  run<T>(fn: Task<T>, context: CallContext | undefined): Promise<T> {
    const ctx = context ?? NO_CONTEXT;
    if (ctx.aborted) return Promise.reject(abortReasonOf(ctx.abortReason));
    if (this.active < this.permits) {
      this.active++;
      const result = this.runHolding(fn, ctx);
      // A context with a deadline belongs to a TimeoutPolicy (this call's or an enclosing one),
      // which settles its caller at once on any abort of it: racing here too would cost a
      // listener per call for nothing. Without a deadline nobody else does it.
      return ctx === NO_CONTEXT || ctx.deadline !== Infinity ? result : settleOnAbort(result, ctx);
    }
    if (this.queued < this.queueLimit) return this.enqueue(fn, ctx);
    if (this.queued > 0 && this.levels[0]!.priority < priorityOf(ctx)) {
      this.displaceLowest();
      return this.enqueue(fn, ctx);
    }
    return this.refuse(this.closed ? 'closed' : 'full');
  }

  /** The bulkhead's counters at this moment. */
  stats(): BulkheadStats {
    return {
      active: this.active,
      queued: this.queued,
      rejected: this.rejectedCount,
      timedOut: this.timedOutCount,
      aborted: this.abortedCount,
    };
  }

  /**
   * Refuses every queued call and every later call with a `'closed'` {@link BulkheadRejectedError},
   * clearing the waiters' timers and listeners (for shutdown). Running calls finish normally.
   * Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.permits = 0;
    this.queueLimit = 0;
    const levels = this.levels.splice(0);
    const error = new BulkheadRejectedError(this.name, 'closed', this.active, this.queued);
    this.queued = 0;
    for (let index = levels.length - 1; index >= 0; index--) {
      let waiter = levels[index]!.head;
      while (waiter !== undefined) {
        const next = waiter.next;
        waiter.prev = waiter.next = undefined;
        waiter.level = undefined;
        this.leaveQueue(waiter);
        waiter.reject(error);
        waiter = next;
      }
    }
  }

  /**
   * Calls `fn` with a permit already counted in `active`; releases it once `fn` has settled.
   * Overridden by the adaptive bulkhead to measure the call.
   */
  protected runHolding<T>(fn: Task<T>, context: CallContext): Promise<T> {
    let result: PromiseLike<T> | T;
    try {
      result = fn(context);
    } catch (error) {
      this.release();
      return Promise.reject(error);
    }
    return Promise.resolve(result).then<T, never>(this.releaseAndReturn, this.releaseAndThrow);
  }

  /** Returns a permit: hands it to the first waiter (while within the limit), or frees it. */
  protected release(): void {
    if (this.queued === 0) {
      this.active--;
      return;
    }
    // A waiter's function may throw synchronously and release again from inside `handOff`:
    // those releases are counted and looped over here, so a queue of throwers cannot grow the stack.
    if (this.releasing) {
      this.deferredReleases++;
      return;
    }
    this.releasing = true;
    try {
      for (let pending = 1; pending > 0; pending += this.takeDeferredReleases()) {
        pending--;
        // Above the limit (the adaptive bulkhead lowered it) the permit is dropped, not handed on.
        if (this.queued === 0 || this.active > this.permits) this.active--;
        else this.handOff(this.levels[this.levels.length - 1]!.head!);
      }
    } finally {
      this.releasing = false;
    }
  }

  /** Hands permits to waiters while the limit (`permits`, just raised) leaves room. */
  protected admitWaiting(): void {
    // Each admission takes a permit and gives it back through `release`, which hands it to the
    // first waiter; inside a release loop it is deferred and handed on by that loop.
    while (this.queued > 0 && this.active < this.permits) {
      this.active++;
      this.release();
    }
  }

  private takeDeferredReleases(): number {
    const count = this.deferredReleases;
    this.deferredReleases = 0;
    return count;
  }

  /** Starts a waiter with the permit just released (it stays counted in `active`). */
  private handOff(waiter: Waiter): void {
    this.unlink(waiter);
    this.queued--;
    if (waiter.timer !== undefined) {
      this.clock.clearTimeout(waiter.timer);
      waiter.timer = undefined;
    }
    waiter.state = RUNNING;
    waiter.scope.runInAsyncScope(this.startWaiter, this, waiter);
  }

  private startWaiter(waiter: Waiter): void {
    this.runHolding(waiter.fn, waiter.context).then(
      (value) => {
        waiter.state = DONE;
        waiter.removeAbortListener?.();
        waiter.resolve(value);
      },
      (error: unknown) => {
        waiter.state = DONE;
        waiter.removeAbortListener?.();
        waiter.reject(error);
      },
    );
  }

  private enqueue<T>(fn: Task<T>, context: CallContext): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter = new Waiter<T>(fn, context, resolve, reject) as Waiter;
      const level = this.levelOf(priorityOf(context));
      const tail = level.tail;
      waiter.prev = tail;
      waiter.level = level;
      if (tail === undefined) level.head = waiter;
      else tail.next = waiter;
      level.tail = waiter;
      this.queued++;
      if (this.queueTimeout !== undefined) waiter.timer = this.clock.setTimeout(() => this.expire(waiter), this.queueTimeout);
      if (context !== NO_CONTEXT) waiter.removeAbortListener = context.onAbort((reason) => this.abandon(waiter, reason));
      if (this.queueSource.hasListeners) this.queueSource.emit({ bulkhead: this.name, active: this.active, queued: this.queued });
    });
  }

  /** The waiter's queue timeout passed. */
  private expire(waiter: Waiter): void {
    waiter.timer = undefined;
    if (waiter.state !== QUEUED) return;
    this.unlink(waiter);
    this.queued--;
    this.timedOutCount++;
    this.leaveQueue(waiter);
    const error = new BulkheadRejectedError(this.name, 'queue-timeout', this.active, this.queued);
    if (this.rejectSource.hasListeners) this.rejectSource.emit({ bulkhead: this.name, reason: 'queue-timeout', active: this.active, queued: this.queued });
    waiter.reject(error);
  }

  /** The waiter's call was aborted: while queued it leaves the queue; while running its caller is settled now. */
  private abandon(waiter: Waiter, reason: unknown): void {
    waiter.removeAbortListener = undefined;
    if (waiter.state === QUEUED) {
      this.unlink(waiter);
      this.queued--;
      this.abortedCount++;
      this.leaveQueue(waiter);
    } else if (waiter.context.deadline !== Infinity) {
      // See `run`: the TimeoutPolicy owning the deadline settles the caller.
      return;
    }
    waiter.reject(abortReasonOf(reason));
  }

  /** Marks a waiter done and clears what it holds; the caller has unlinked it. */
  private leaveQueue(waiter: Waiter): void {
    waiter.state = DONE;
    if (waiter.timer !== undefined) {
      this.clock.clearTimeout(waiter.timer);
      waiter.timer = undefined;
    }
    const remove = waiter.removeAbortListener;
    if (remove !== undefined) {
      waiter.removeAbortListener = undefined;
      remove();
    }
  }

  /** The level of `priority`, created (in order) when no waiter of that priority is queued. */
  private levelOf(priority: number): WaiterLevel {
    const levels = this.levels;
    const count = levels.length;
    // Same priority as the last level (the only one, when every call has the same priority).
    if (count > 0 && levels[count - 1]!.priority === priority) return levels[count - 1]!;
    let low = 0;
    let high = count;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const candidate = levels[middle]!.priority;
      if (candidate === priority) return levels[middle]!;
      if (candidate < priority) low = middle + 1;
      else high = middle;
    }
    let level = this.spareLevel;
    if (level === undefined) level = new WaiterLevel(priority);
    else {
      this.spareLevel = undefined;
      level.priority = priority;
    }
    if (low === count) levels.push(level);
    else levels.splice(low, 0, level);
    return level;
  }

  /** Refuses the newest waiter of the lowest priority to make room for a call of higher priority. */
  private displaceLowest(): void {
    const waiter = this.levels[0]!.tail!;
    this.unlink(waiter);
    this.queued--;
    this.rejectedCount++;
    this.leaveQueue(waiter);
    if (this.rejectSource.hasListeners) this.rejectSource.emit({ bulkhead: this.name, reason: 'displaced', active: this.active, queued: this.queued });
    waiter.reject(new BulkheadRejectedError(this.name, 'displaced', this.active, this.queued));
  }

  private unlink(waiter: Waiter): void {
    const { prev, next } = waiter;
    const level = waiter.level!;
    if (prev === undefined) level.head = next;
    else prev.next = next;
    if (next === undefined) level.tail = prev;
    else next.prev = prev;
    waiter.prev = waiter.next = undefined;
    waiter.level = undefined;
    if (level.head === undefined) this.dropLevel(level);
  }

  /** Removes an emptied level from the sorted array. */
  private dropLevel(level: WaiterLevel): void {
    const levels = this.levels;
    const last = levels.length - 1;
    if (levels[last] === level) levels.pop();
    else if (levels[0] === level) levels.shift();
    else {
      let low = 1;
      let high = last;
      while (levels[low] !== level) {
        const middle = (low + high) >>> 1;
        if (levels[middle]!.priority < level.priority) low = middle + 1;
        else high = middle;
      }
      levels.splice(low, 1);
    }
    this.spareLevel = level;
  }

  private refuse(reason: 'full' | 'closed'): Promise<never> {
    if (reason === 'full') this.rejectedCount++;
    const error = new BulkheadRejectedError(this.name, reason, this.active, this.queued);
    if (this.rejectSource.hasListeners) this.rejectSource.emit({ bulkhead: this.name, reason, active: this.active, queued: this.queued });
    return Promise.reject(error);
  }
}

