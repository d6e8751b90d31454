import { NO_CONTEXT, type CallContext, type Task } from '../../core/context.js';
import type { PolicyDependencies } from '../../core/dependencies.js';
import { InvalidOptionError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { compileMatchers } from '../../core/matchers.js';
import { executeWith, invoke, type Policy } from '../../core/policy.js';
import { rejectUnknownOptions } from '../../core/validate.js';
import type { FallbackHandler, FallbackOptions } from './fallback.options.js';

const KNOWN_OPTIONS: readonly string[] = ['handler', 'value', 'handles'];
const NO_ARGS: readonly unknown[] = Object.freeze([]);

/** The options of a {@link FallbackPolicy} after validation. */
export interface ResolvedFallbackOptions<T = unknown> {
  /** The handler; `undefined` when a value was given. */
  readonly handler: FallbackHandler<T> | undefined;
  /** The substitute value; meaningful only when `handler` is `undefined`. */
  readonly value: T | undefined;
  /** Only errors it accepts are handled; `undefined`: every error. */
  readonly handles: ((error: unknown) => boolean) | undefined;
}

/** Emitted when the fallback replaces a failed call's error. */
export interface FallbackEvent {
  /** The error the fallback handled. */
  readonly error: unknown;
}

/**
 * Turns a failed call into a substitute result: a value, or what a handler computes from the
 * error and the call's arguments. Errors it does not handle (not matched by `handles`, or the
 * caller aborted the call) pass through unchanged; a handler that fails surfaces its own error.
 * The substitute must have the type the protected method returns.
 *
 * @example
 * const fallback = new FallbackPolicy({ handler: (error, id) => cache.get(id), handles: (e) => httpStatusOf(e) !== 404 });
 */
export class FallbackPolicy<F = unknown> implements Policy {
  /** The resolved options. */
  readonly options: ResolvedFallbackOptions<F>;
  private readonly fallbackSource = new EventSource<FallbackEvent>();

  /** Fires when a handled error is about to be replaced by the fallback. */
  readonly onFallback: Event<FallbackEvent> = this.fallbackSource.event;

  /** @throws InvalidOptionError unless exactly one of `handler` (a function) and `value` is given. */
  constructor(options: FallbackOptions<F>, _dependencies: PolicyDependencies = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOptionError('options', options, 'an object with either `handler` or `value`');
    }
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    const hasHandler = Object.hasOwn(options, 'handler');
    const hasValue = Object.hasOwn(options, 'value');
    if (hasHandler === hasValue) {
      throw new InvalidOptionError(
        hasHandler ? 'value' : 'handler',
        hasHandler ? (options as { value: unknown }).value : undefined,
        'exactly one of `handler` (a function (error, ...args) => result) and `value`',
      );
    }
    let handler: FallbackHandler<F> | undefined;
    if (hasHandler) {
      handler = (options as { handler: unknown }).handler as FallbackHandler<F>;
      if (typeof handler !== 'function') throw new InvalidOptionError('handler', handler, 'a function (error, ...args) => result');
    }
    this.options = {
      handler,
      value: hasValue ? (options as { value: F }).value : undefined,
      handles: compileMatchers(options.handles, 'handles'),
    };
  }

  /** Runs `fn`, replacing a handled error by the fallback; see {@link Policy.execute}. */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T> {
    return executeWith((ctx) => this.run(fn, ctx), context);
  }

  /**
   * Runs `fn` inside an already resolved context.
   *
   * @param args the protected method's arguments, passed to the handler after the error.
   */
  run<T>(fn: Task<T>, context: CallContext | undefined, args: readonly unknown[] = NO_ARGS): Promise<T> {
    const ctx = context ?? NO_CONTEXT;
    return invoke(fn, ctx).then(undefined, (error: unknown) => this.recover(error, ctx, args)) as Promise<T>;
  }

  private recover(error: unknown, context: CallContext, args: readonly unknown[]): F | PromiseLike<F> {
    // A caller that gave up wants its abort, not a substitute answer nobody will read.
    if (context.aborted) throw error;
    const { handles, handler } = this.options;
    if (handles !== undefined && !handles(error)) throw error;
    if (this.fallbackSource.hasListeners) this.fallbackSource.emit({ error });
    // A throw here rejects the call with the handler's own error, by design not the original.
    return handler === undefined ? (this.options.value as F) : handler(error, ...args);
  }
}
