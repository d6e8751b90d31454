/** Returned by every subscription; call `dispose()` to unsubscribe. */
export interface Disposable {
  /** Removes the listener; calling it again does nothing. */
  dispose(): void;
}

/** A subscription function: call it with a listener to receive events of type `T`. */
export type Event<T> = (listener: (event: T) => void) => Disposable;

/**
 * The emitting side of an {@link Event}. Emitting with no listener costs one length check, so
 * engines emit unconditionally on hot paths. A listener that throws never breaks the call that
 * emitted: its error is reported as a process warning.
 */
export class EventSource<T> {
  private listeners: Array<(event: T) => void> = [];

  /** Subscribes a listener. */
  readonly event: Event<T> = (listener) => {
    this.listeners = [...this.listeners, listener];
    return {
      dispose: () => {
        this.listeners = this.listeners.filter((candidate) => candidate !== listener);
      },
    };
  };

  /** Whether anyone listens; lets callers skip building an event object. */
  get hasListeners(): boolean {
    return this.listeners.length > 0;
  }

  /** Calls every current listener with `event`, in subscription order. */
  emit(event: T): void {
    // The array is replaced, never mutated, on (un)subscribe: a listener that unsubscribes
    // during emit does not skip its neighbour.
    const listeners = this.listeners;
    for (let i = 0; i < listeners.length; i++) {
      try {
        listeners[i]!(event);
      } catch (error) {
        process.emitWarning(`nest-resilience: an event listener threw: ${String((error as Error)?.stack ?? error)}`, 'ListenerError');
      }
    }
  }
}
