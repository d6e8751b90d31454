import { Injectable } from '@nestjs/common';
import { EventSource, type Disposable } from '../../core/events.js';
import type { CircuitBreakerInstance, CircuitBreakerStats, CircuitStateChangeEvent } from '../../policies/circuit-breaker/index.js';
import { NamedRegistry } from './named-registry.js';

/**
 * The live circuit breakers of the application: one per named policy that has a breaker, and
 * one per class and method with inline options (named `Class.method`). Operations on a shared
 * breaker (`shared: true`) act fleet-wide and return a promise.
 */
@Injectable()
export class CircuitBreakerRegistry extends NamedRegistry<CircuitBreakerInstance> {
  protected readonly kind = 'circuit breaker';
  private readonly subscriptions = new Map<string, Disposable>();
  private readonly stateChanges = new EventSource<CircuitStateChangeEvent>();
  /** State changes of every breaker in the registry, present and future. */
  readonly onStateChange = this.stateChanges.event;

  /** Every breaker with its state and counters. */
  list(): Array<{ name: string } & CircuitBreakerStats> {
    return [...this.items].map(([name, breaker]) => ({ name, ...breaker.stats() }));
  }

  /** Rejects every call until {@link reset}. */
  forceOpen(name: string): unknown {
    return this.get(name).forceOpen();
  }

  /** Lets every call through and records nothing until {@link reset}. */
  disable(name: string): unknown {
    return this.get(name).disable();
  }

  /** Back to CLOSED with an empty window. */
  reset(name: string): unknown {
    return this.get(name).reset();
  }

  /** Adds or replaces a breaker (the module does this; replacing resets its state). */
  override register(name: string, breaker: CircuitBreakerInstance): void {
    this.subscriptions.get(name)?.dispose();
    super.register(name, breaker);
    this.subscriptions.set(name, breaker.onStateChange((event) => this.stateChanges.emit(event)));
  }
}
