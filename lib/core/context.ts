import { AsyncLocalStorage } from 'node:async_hooks';
import { systemClock, type Clock } from './clock.js';
import { OperationAbortedError } from './errors.js';

type AbortListener = (reason: unknown) => void;

/**
 * The state of one call through a policy: its deadline and whether it was aborted. The
 * `AbortSignal` is created only when someone reads {@link signal}: a call that never asks for
 * it pays for no `AbortController` and no listener.
 *
 * Aborting a context aborts every context derived from it (a retry attempt, a timeout's scope),
 * never its parent.
 */
export class CallContext {
  /** Absolute deadline on the policy's clock; `Infinity` when the call has none. */
  readonly deadline: number;
  /**
   * How much the call matters when there is not room for every call: higher wins. A bulkhead
   * serves its queue highest first and a load shedder refuses the lowest first. Inherited from
   * the parent. @default 1 (`'normal'`; `'low'` is 0, `'high'` 2, `'critical'` 3)
   */
  readonly priority: number;
  private controller: AbortController | undefined;
  // A Set: calls register and leave in any order, and removal must not cost a search. Derived
  // contexts sit in it themselves: no closure per call to link a child to its parent.
  private listeners: Set<AbortListener | CallContext> | undefined;
  private reason: unknown;
  private isAborted = false;
  /** The parent whose listeners hold this context. */
  private attachedTo: CallContext | undefined;
  private detachFromParent: (() => void) | undefined;

  /**
   * @param parent the enclosing call; its abort propagates here and its deadline bounds ours.
   * @param deadline an absolute deadline for this call; the earlier of it and the parent's wins.
   * @param priority this call's priority; by default the parent's (1 without one).
   */
  constructor(parent?: CallContext, deadline = Infinity, priority?: number) {
    this.deadline = parent !== undefined && parent.deadline < deadline ? parent.deadline : deadline;
    this.priority = priority ?? (parent === undefined ? 1 : parent.priority);
    if (parent !== undefined && parent !== NO_CONTEXT) {
      if (parent.isAborted) {
        this.isAborted = true;
        this.reason = parent.reason;
      } else {
        this.attachedTo = parent;
        (parent.listeners ??= new Set()).add(this);
      }
    }
  }

  /**
   * A context that follows an external `AbortSignal`. Call {@link dispose} when the call ends.
   * However many calls share one signal, the signal carries a single listener of ours (no
   * `MaxListenersExceededWarning`), removed when the last of those calls ends.
   */
  static fromSignal(signal: AbortSignal, parent?: CallContext): CallContext {
    if (signal.aborted) {
      const context = new CallContext(parent);
      context.abort(signal.reason);
      return context;
    }
    let relay = signalRelays.get(signal);
    if (relay === undefined) {
      const root = new CallContext();
      const listener = (): void => root.abort(signal.reason);
      signal.addEventListener('abort', listener, { once: true });
      relay = { root, users: 0, release: () => signal.removeEventListener('abort', listener) };
      signalRelays.set(signal, relay);
    }
    const shared = relay;
    shared.users++;
    // Attached to the relay's root; the caller's parent, if any, is followed by a listener.
    const context = new CallContext(shared.root, parent?.deadline, parent?.priority);
    const detachFromParent = parent === undefined || parent === NO_CONTEXT ? undefined : parent.onAbort((reason) => context.abort(reason));
    context.detachFromParent = () => {
      detachFromParent?.();
      if (--shared.users === 0 && signalRelays.get(signal) === shared) {
        signalRelays.delete(signal);
        shared.release();
      }
    };
    return context;
  }

  /** Whether the call was aborted (deadline reached, caller gave up, or parent aborted). */
  get aborted(): boolean {
    return this.isAborted;
  }

  /** Why the call was aborted; `undefined` while it is not. */
  get abortReason(): unknown {
    return this.reason;
  }

  /** An `AbortSignal` that fires when this call is aborted. Created on first read. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.isAborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Milliseconds left before the deadline at time `now`; `Infinity` without a deadline. */
  remaining(now: number): number {
    return this.deadline === Infinity ? Infinity : Math.max(0, this.deadline - now);
  }

  /**
   * Runs `listener` once when the call is aborted (at once if it already is); a function
   * registered twice runs once. Returns a function
   * that removes the listener; engines call it when they stop waiting, so nothing outlives a call.
   */
  onAbort(listener: AbortListener): () => void {
    if (this.isAborted) {
      listener(this.reason);
      return noop;
    }
    // The shared inert context never aborts: keeping listeners there would only leak them.
    if (this === NO_CONTEXT) return noop;
    const listeners = (this.listeners ??= new Set());
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }

  /**
   * Aborts this call and every call derived from it. The first reason wins; without one the
   * reason is an {@link OperationAbortedError}, so a rejection never carries `undefined`.
   */
  abort(reason: unknown = new OperationAbortedError()): void {
    if (this.isAborted || this === NO_CONTEXT) return;
    this.isAborted = true;
    this.reason = reason;
    this.detach();
    this.controller?.abort(reason);
    this.onAborted(reason);
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners === undefined) return;
    for (const listener of listeners) {
      if (typeof listener === 'function') listener(reason);
      else listener.abort(reason);
    }
  }

  /**
   * Called once when this call is aborted, after its signal fired and before the listeners run:
   * what a subclass owning the call (a timeout) does on abort, without a listener per call.
   */
  protected onAborted(_reason: unknown): void {}

  /** Detaches from the parent and from an external signal. Idempotent. */
  dispose(): void {
    this.detach();
    this.listeners = undefined;
  }

  private detach(): void {
    const parent = this.attachedTo;
    if (parent !== undefined) {
      this.attachedTo = undefined;
      parent.listeners?.delete(this);
    }
    const detach = this.detachFromParent;
    if (detach !== undefined) {
      this.detachFromParent = undefined;
      detach();
    }
  }
}

function noop(): void {}

interface SignalRelay {
  readonly root: CallContext;
  users: number;
  readonly release: () => void;
}

// Keyed weakly by the caller's signal: an entry lives only while calls use that signal.
const signalRelays = new WeakMap<AbortSignal, SignalRelay>();

/**
 * The context of a call that has neither a deadline nor a caller that can abort it. Shared and
 * inert: aborting it does nothing.
 */
export const NO_CONTEXT = new CallContext();

/**
 * Settles with `result`, or with the abort reason as soon as `context` aborts, whichever comes
 * first; the listener is removed when `result` settles.
 */
export function settleOnAbort<T>(result: Promise<T>, context: CallContext): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const remove = context.onAbort(reject);
    result.then(
      (value) => {
        remove();
        resolve(value);
      },
      (error: unknown) => {
        remove();
        reject(error);
      },
    );
  });
}

/** An abort reason as an error to reject with: never `undefined`. */
export function abortReasonOf(reason: unknown): unknown {
  return reason === undefined ? new OperationAbortedError() : reason;
}

/** The function a policy runs. It receives the call's context (deadline, lazy `AbortSignal`). */
export type Task<T> = (context: CallContext) => PromiseLike<T> | T;

const storage = new AsyncLocalStorage<CallContext>();

// On Node 20 and 22, AsyncLocalStorage propagates through async hooks: once a store has been
// entered, every promise in the process pays for them (a bare `await` costs 2–3 × more), until
// the store is disabled. So the store is disabled as soon as no call of ours is in flight, and
// the next call enables it again: routes without a deadline, and the parts of a request outside
// one, run without the hooks. (Where AsyncLocalStorage rides on AsyncContextFrame, Node 24
// onwards, it has no such price and stays as it is.)
const PRICED_BY_HOOKS = '_propagate' in AsyncLocalStorage.prototype;
/** Calls whose task has not settled yet: their code may still read the context. */
let inFlight = 0;
let tracking = false;
let disablePending = false;

// Run from the next-tick queue, once the current turn's microtasks have drained. Turning the
// hooks off and on costs ~1.4 µs: calls that follow each other within one turn (a loop of
// awaited calls) keep them on, where a call per request (the next one comes with the next I/O
// event) turns them off in between.
function disableIfIdle(): void {
  disablePending = false;
  if (inFlight > 0) return;
  tracking = false;
  storage.disable();
}

/**
 * Runs `fn` with `context` as the current one. Entered only by calls that carry a deadline.
 * The call counts as in flight, its context readable wherever its task's async work goes,
 * until the caller reports with {@link leaveContext} that `fn`'s result settled (a synchronous
 * throw leaves by itself). A task that outlives its deadline is still in flight.
 */
export function runInContext<T>(context: CallContext, fn: Task<T>): PromiseLike<T> | T {
  inFlight++;
  tracking = true;
  try {
    return storage.run(context, fn, context);
  } catch (error) {
    leaveContext();
    throw error;
  }
}

/** Ends a call entered with {@link runInContext}, once its task's result has settled. */
export function leaveContext(): void {
  if (--inFlight === 0 && !disablePending && PRICED_BY_HOOKS) {
    disablePending = true;
    process.nextTick(disableIfIdle);
  }
}

/**
 * Whether our AsyncLocalStorage is on (a call with a deadline is in flight, or left during the
 * current turn). Internal; for tests.
 */
export function contextTrackingEnabled(): boolean {
  return tracking;
}

/**
 * The context of the call in progress, if code runs inside a call that carries a deadline
 * (a `@Timeout`); `undefined` otherwise.
 */
export function currentContext(): CallContext | undefined {
  return tracking ? storage.getStore() : undefined;
}

/**
 * The `AbortSignal` of the call in progress: it fires when the call's timeout (or an enclosing
 * one) expires or the caller aborts. `undefined` outside a call with a deadline.
 *
 * @example
 * \@Timeout('2s')
 * async fetchQuote() {
 *   return fetch(url, { signal: getAbortSignal() });
 * }
 */
export function getAbortSignal(): AbortSignal | undefined {
  return currentContext()?.signal;
}

/**
 * Milliseconds left before the deadline of the call in progress (its own or an enclosing one),
 * or `undefined` outside a call with a deadline. Pass the clock the policies use (the real one
 * by default).
 */
export function getRemainingTime(clock: Clock = systemClock): number | undefined {
  const context = currentContext();
  return context === undefined || context.deadline === Infinity ? undefined : context.remaining(clock.now());
}
