import { CallContext, currentContext, type Task } from './context.js';

/**
 * What every engine implements: run a task under the policy. Policies compose by nesting
 * {@link Policy.run}; see `pipeline()`.
 */
export interface Policy {
  /**
   * Runs `fn` under this policy.
   *
   * @param fn the work; it receives the call's context, whose `signal` fires on abort or deadline.
   * @param context the caller's context or `AbortSignal`; without one, the call joins the context
   *   of the call in progress (an enclosing `@Timeout`), if any.
   */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal): Promise<T>;
  /** Runs `fn` inside an already resolved context (`undefined`: none). Used by compositions. */
  run<T>(fn: Task<T>, context: CallContext | undefined): Promise<T>;
}

/**
 * Resolves the second argument of {@link Policy.execute} and runs `run` with it. An external
 * signal gets a context of its own, detached from the signal when the call settles, so a
 * long-lived signal does not collect a listener per call.
 */
export function executeWith<T>(
  run: (context: CallContext | undefined) => Promise<T>,
  context: CallContext | AbortSignal | undefined,
): Promise<T> {
  if (context === undefined) return run(currentContext());
  if (context instanceof CallContext) return run(context);
  const scoped = CallContext.fromSignal(context, currentContext());
  return run(scoped).finally(() => scoped.dispose());
}

/** Invokes a task and always returns a promise, turning a synchronous throw into a rejection. */
export function invoke<T>(fn: Task<T>, context: CallContext): Promise<T> {
  try {
    const result = fn(context);
    return result instanceof Promise ? result : Promise.resolve(result);
  } catch (error) {
    return Promise.reject(error);
  }
}
