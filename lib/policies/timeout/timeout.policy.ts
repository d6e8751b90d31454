import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { CallContext, leaveContext, runInContext, type Task } from '../../core/context.js';
import type { PolicyDependencies } from '../../core/dependencies.js';
import { toMilliseconds, type Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { EventSource } from '../../core/events.js';
import { executeWith, type Policy } from '../../core/policy.js';
import { rejectUnknownOptions } from '../../core/validate.js';
import { TimeoutExceededError } from './timeout.error.js';
import type { TimeoutOptions } from './timeout.options.js';

/** Emitted when a call reaches its deadline. */
export interface TimeoutEvent {
  /** The time the call was allowed, in milliseconds (shorter than the policy's when an enclosing deadline came first). */
  timeoutMs: number;
}

/**
 * Bounds each call by a deadline. The task runs inside a {@link CallContext} whose `signal`
 * fires at the deadline, readable through the task's argument or `getAbortSignal()`; an
 * enclosing deadline is never extended. The signal's `AbortController` exists only if the task
 * reads it. The policy's calls wait for their deadlines under one timer, cleared once none is left.
 *
 * On timeout the returned promise rejects with {@link TimeoutExceededError} at once; the task
 * keeps running until it notices the signal (JavaScript cannot stop it), and its outcome is
 * discarded.
 */
export class TimeoutPolicy implements Policy {
  /** The resolved options. */
  readonly options: { readonly duration: number };
  private readonly clock: Clock;
  private readonly timeouts = new EventSource<TimeoutEvent>();
  private readonly queue: DeadlineQueue;
  /** Subscribes to timeouts. */
  readonly onTimeout = this.timeouts.event;

  /**
   * @param options the duration, alone or as `{ duration }`.
   * @throws InvalidOptionError when the duration is not a positive duration of at most 2³¹−1 ms.
   */
  constructor(options: TimeoutOptions | Duration, dependencies: PolicyDependencies = {}) {
    let duration: unknown = options;
    if (typeof options === 'object' && options !== null) {
      rejectUnknownOptions(options, ['duration'], '');
      duration = options.duration;
      if (duration === undefined) throw new InvalidOptionError('duration', undefined, "a duration such as 2000 or '2s'");
    }
    this.options = { duration: toMilliseconds(duration, 'duration', { allowZero: false, timer: true }) };
    this.clock = dependencies.clock ?? systemClock;
    this.queue = new DeadlineQueue(this.clock);
  }

  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((resolved) => this.run(fn, resolved), context);
  }

  run<T>(fn: Task<T>, parent: CallContext | undefined): Promise<T> {
    const start = this.clock.now();
    const call = new DeadlineCall<T>(parent, start + this.options.duration, this.clock);
    if (call.aborted) return Promise.reject(call.abortReason);
    const settled = new Promise<T>((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    call.start(fn, start, this.timeouts, this.queue);
    return settled;
  }
}

/**
 * The calls of one policy waiting for their own deadline, earliest first, under a single timer.
 * Every call of a policy gets the same duration, so its deadline is never earlier than that of
 * the call before it: joining is an append and leaving an unlink, where a timer per call cost
 * ~250 ns (Node's `setTimeout` and `clearTimeout`) and an object for the collector. The timer is
 * armed for the earliest deadline; a call that settles first leaves it armed, and when it fires
 * early it is armed again for the call now in front. It is cleared once no call is left.
 */
class DeadlineQueue {
  oldest: DeadlineCall<unknown> | undefined;
  newest: DeadlineCall<unknown> | undefined;
  private timer: TimerHandle;
  private armed = false;
  private readonly expireDue = (): void => this.expire();

  constructor(private readonly clock: Clock) {}

  /** Whether `deadline` can join behind the newest call (deadline order holds). */
  accepts(deadline: number): boolean {
    return this.newest === undefined || this.newest.deadline <= deadline;
  }

  add(call: DeadlineCall<unknown>, now: number): void {
    const newest = this.newest;
    call.older = newest;
    if (newest === undefined) this.oldest = call;
    else newest.newer = call;
    this.newest = call;
    if (!this.armed) this.arm(call.deadline - now);
  }

  remove(call: DeadlineCall<unknown>): void {
    const { older, newer } = call;
    if (older === undefined) this.oldest = newer;
    else older.newer = newer;
    if (newer === undefined) this.newest = older;
    else newer.older = older;
    call.older = call.newer = undefined;
    if (this.oldest === undefined && this.armed) {
      this.armed = false;
      this.clock.clearTimeout(this.timer);
    }
  }

  private arm(ms: number): void {
    this.armed = true;
    this.timer = this.clock.setTimeout(this.expireDue, ms);
  }

  private expire(): void {
    this.armed = false;
    const now = this.clock.now();
    // Aborting a call runs its listeners, which may settle (and unlink) other calls: read the front anew each time.
    for (let call = this.oldest; call !== undefined && call.deadline <= now; call = this.oldest) call.expire();
    if (this.oldest !== undefined && !this.armed) this.arm(this.oldest.deadline - now);
  }
}

/**
 * One call under a deadline: its context, its place in the policy's {@link DeadlineQueue} (or a
 * timer of its own) and how its caller is settled. Any abort — the deadline, an enclosing one,
 * or the caller — settles the caller at once (through {@link CallContext.onAborted}, no listener
 * per call); the task's own outcome settles it otherwise, and leaves the queue.
 */
class DeadlineCall<T> extends CallContext {
  resolve!: (value: T) => void;
  reject!: (reason: unknown) => void;
  /** The queue this call waits in, until it settles or expires. */
  private queue: DeadlineQueue | undefined;
  /** Neighbours in the queue. */
  older: DeadlineCall<unknown> | undefined;
  newer: DeadlineCall<unknown> | undefined;
  /** The call's own timer, when it could not join the queue. */
  private timer: TimerHandle;
  private allowedMs = 0;
  private timeouts!: EventSource<TimeoutEvent>;

  constructor(
    parent: CallContext | undefined,
    deadline: number,
    private readonly clock: Clock,
  ) {
    super(parent, deadline);
  }

  start(fn: Task<T>, start: number, timeouts: EventSource<TimeoutEvent>, queue: DeadlineQueue): void {
    this.allowedMs = this.deadline - start;
    this.timeouts = timeouts;
    // An enclosing deadline that comes first, or a clock set back, would break the queue's
    // order: such a call keeps a timer of its own.
    if (queue.accepts(this.deadline)) {
      this.queue = queue;
      queue.add(this as DeadlineCall<unknown>, start);
    } else {
      this.timer = this.clock.setTimeout(() => this.expire(), this.allowedMs);
    }
    let result: PromiseLike<T> | T;
    try {
      result = runInContext(this, fn);
    } catch (error) {
      this.end();
      this.reject(error);
      return;
    }
    Promise.resolve(result).then(
      (value) => {
        leaveContext();
        this.end();
        this.resolve(value);
      },
      (error: unknown) => {
        leaveContext();
        this.end();
        this.reject(error);
      },
    );
  }

  /** The deadline came: the caller gets a {@link TimeoutExceededError}. */
  expire(): void {
    const allowedMs = this.allowedMs;
    const error = new TimeoutExceededError(allowedMs);
    if (this.timeouts.hasListeners) this.timeouts.emit({ timeoutMs: allowedMs });
    this.abort(error);
  }

  protected override onAborted(reason: unknown): void {
    this.stopWaiting();
    this.reject(reason);
  }

  private end(): void {
    this.stopWaiting();
    this.dispose();
  }

  private stopWaiting(): void {
    const queue = this.queue;
    if (queue !== undefined) {
      this.queue = undefined;
      queue.remove(this as DeadlineCall<unknown>);
    } else {
      this.clock.clearTimeout(this.timer);
    }
  }
}
