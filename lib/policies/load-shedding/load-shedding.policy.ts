import { CallContext, NO_CONTEXT, type Task } from '../../core/context.js';
import type { PolicyDependencies } from '../../core/dependencies.js';
import { InvalidOptionError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import type { ArgumentAwarePolicy } from '../../core/pipeline.js';
import { executeWith, invoke } from '../../core/policy.js';
import { rejectUnknownOptions } from '../../core/validate.js';
import { LoadShedError } from './load-shedding.error.js';
import type { OverloadDetector, OverloadLevel } from './overload.js';
import { toPriority, type PriorityLevel } from './priority.js';

/**
 * A priority as a function of the call's arguments (on a controller, its `ExecutionContext`).
 * Returning `undefined` keeps the priority the call already has.
 */
// oxlint-disable-next-line no-explicit-any
export type PriorityFunction = (...args: any[]) => PriorityLevel | number | undefined;

/** Options of a load-shedding policy. */
export interface LoadSheddingPolicyOptions {
  /**
   * The call's priority: a level, a finite number (higher matters more), or a function of the
   * call's arguments returning one, called once per call. @default the enclosing call's priority
   * (`'normal'`, 1, without one)
   */
  priority?: PriorityLevel | number | PriorityFunction;
}

/** Emitted when a call is shed. */
export interface LoadShedEvent {
  /** The shed call's priority. */
  priority: number;
  /** The overload level at that moment. */
  level: OverloadLevel;
  /** The detector's last delay reading, in milliseconds. */
  delayMs: number;
}

const KNOWN_OPTIONS = ['priority'] as const;

/**
 * Gives a call its priority and, under overload, refuses it when that priority is too low: the
 * {@link OverloadDetector} decides which priorities run, the call is refused at once with
 * {@link LoadShedError} (HTTP 503 with `Retry-After`) without running. An admitted call runs in a
 * context carrying its priority, which every layer inside reads (a bulkhead serves its queue
 * highest first). Without a detector the policy only assigns the priority.
 *
 * An admitted call costs one comparison, plus a child context when its priority differs from
 * the enclosing call's.
 *
 * @example
 * const detector = new OverloadDetector({ eventLoopDelay: '50ms' });
 * detector.start();
 * const reports = new LoadSheddingPolicy({ priority: 'low' }, detector);
 * await reports.execute(() => buildReport());
 */
export class LoadSheddingPolicy implements ArgumentAwarePolicy {
  /** The priority given by the options, as a number; `undefined` when a function or the enclosing call decides. */
  readonly priority: number | undefined;
  private readonly priorityOf: PriorityFunction | undefined;
  private readonly detector: OverloadDetector | undefined;

  private readonly sheds = new EventSource<LoadShedEvent>();
  /** Subscribes to shed calls. */
  readonly onShed: Event<LoadShedEvent> = this.sheds.event;

  /**
   * @param options see {@link LoadSheddingPolicyOptions}.
   * @param detector the application's overload detector; without one no call is shed.
   * @param _dependencies accepted for symmetry with the other engines; the policy keeps no time.
   * @throws InvalidOptionError when an option is unknown or the priority is not a level, a finite number or a function.
   */
  constructor(options: LoadSheddingPolicyOptions = {}, detector?: OverloadDetector, _dependencies: PolicyDependencies = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('loadShedding', options, 'an options object');
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    const priority = options.priority;
    if (typeof priority === 'function') {
      this.priority = undefined;
      this.priorityOf = priority;
    } else {
      this.priority = priority === undefined ? undefined : toPriority(priority, 'priority');
      this.priorityOf = undefined;
    }
    this.detector = detector;
  }

  /** Runs `fn` under the policy; see {@link Policy.execute}. */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal, args?: readonly unknown[]): Promise<T> {
    return executeWith((resolved) => this.run(fn, resolved, args), context);
  }

  /**
   * Runs `fn` with the call's priority, or refuses it.
   *
   * @param args the call's arguments, handed to a priority function.
   * @returns the function's outcome; a {@link LoadShedError} when shed; an
   *   {@link InvalidOptionError} when a priority function returns something that is not a priority.
   */
  run<T>(fn: Task<T>, context: CallContext | undefined, args?: readonly unknown[]): Promise<T> {
    const parent = context ?? NO_CONTEXT;
    let priority = this.priority;
    if (priority === undefined) {
      if (this.priorityOf === undefined) {
        priority = parent.priority;
      } else {
        try {
          priority = this.callPriority(this.priorityOf, args, parent);
        } catch (error) {
          return Promise.reject(error);
        }
      }
    }
    const detector = this.detector;
    if (detector !== undefined && !detector.admits(priority)) return this.shed(priority, detector);
    if (priority === parent.priority) return invoke(fn, parent);
    return runWithPriority(fn, parent, priority);
  }

  private callPriority(priorityOf: PriorityFunction, args: readonly unknown[] | undefined, parent: CallContext): number {
    const value: unknown = args === undefined ? priorityOf() : priorityOf(...args);
    if (value === undefined) return parent.priority;
    if (typeof value === 'number' && Number.isFinite(value)) return value;
    return toPriority(value, 'priority (returned by the priority function)');
  }

  private shed(priority: number, detector: OverloadDetector): Promise<never> {
    const level = detector.level;
    if (this.sheds.hasListeners) this.sheds.emit({ priority, level, delayMs: detector.delayMs });
    return Promise.reject(new LoadShedError(priority, detector.retryAfterMs, level));
  }
}

/** Runs `fn` in a child context carrying `priority`, detached from its parent once `fn` settles. */
function runWithPriority<T>(fn: Task<T>, parent: CallContext, priority: number): Promise<T> {
  const child = new CallContext(parent, Infinity, priority);
  // A child of the inert context is attached to nothing: there is nothing to detach.
  if (parent === NO_CONTEXT) return invoke(fn, child);
  let result: PromiseLike<T> | T;
  try {
    result = fn(child);
  } catch (error) {
    child.dispose();
    return Promise.reject(error);
  }
  if (!(result instanceof Promise) && !isThenable(result)) {
    child.dispose();
    return Promise.resolve(result);
  }
  return Promise.resolve(result).then(
    (value) => {
      child.dispose();
      return value;
    },
    (error: unknown) => {
      child.dispose();
      throw error;
    },
  );
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}
