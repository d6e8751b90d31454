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
 * reads it, and the call's only timer is cleared as soon as it settles.
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
    call.start(fn, start, this.timeouts);
    return settled;
  }
}

/**
 * One call under a deadline: its context, its timer and how its caller is settled. Any abort —
 * the deadline, an enclosing one, or the caller — settles the caller at once (through
 * {@link CallContext.onAborted}, no listener per call); the task's own outcome settles it
 * otherwise, and clears the timer.
 */
class DeadlineCall<T> extends CallContext {
  resolve!: (value: T) => void;
  reject!: (reason: unknown) => void;
  private timer: TimerHandle;

  constructor(
    parent: CallContext | undefined,
    deadline: number,
    private readonly clock: Clock,
  ) {
    super(parent, deadline);
  }

  start(fn: Task<T>, start: number, timeouts: EventSource<TimeoutEvent>): void {
    const allowedMs = this.deadline - start;
    this.timer = this.clock.setTimeout(() => {
      const error = new TimeoutExceededError(allowedMs);
      if (timeouts.hasListeners) timeouts.emit({ timeoutMs: allowedMs });
      this.abort(error);
    }, allowedMs);
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

  protected override onAborted(reason: unknown): void {
    this.clock.clearTimeout(this.timer);
    this.reject(reason);
  }

  private end(): void {
    this.clock.clearTimeout(this.timer);
    this.dispose();
  }
}
