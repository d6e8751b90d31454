import { Injectable } from '@nestjs/common';
import { EventSource, type Disposable } from '../../core/events.js';
import type { CircuitBreakerPolicy, CircuitBreakerStats, CircuitStateChangeEvent } from '../../policies/circuit-breaker/index.js';
import { registryMessages } from './registry.messages.js';

/**
 * The live circuit breakers of the application: one per named policy that has a breaker, and
 * one per class and method with inline options (named `Class.method`).
 */
@Injectable()
export class CircuitBreakerRegistry {
  private readonly breakers = new Map<string, CircuitBreakerPolicy>();
  private readonly subscriptions = new Map<string, Disposable>();
  private readonly stateChanges = new EventSource<CircuitStateChangeEvent>();
  /** State changes of every breaker in the registry, present and future. */
  readonly onStateChange = this.stateChanges.event;

  /** @throws Error naming the known breakers when there is none of that name. */
  get(name: string): CircuitBreakerPolicy {
    const breaker = this.breakers.get(name);
    if (breaker === undefined) throw new Error(registryMessages.notFound('circuit breaker', name, [...this.breakers.keys()]));
    return breaker;
  }

  /** Whether a breaker of that name exists. */
  has(name: string): boolean {
    return this.breakers.has(name);
  }

  /** Every breaker with its state and counters. */
  list(): Array<{ name: string } & CircuitBreakerStats> {
    return [...this.breakers].map(([name, breaker]) => ({ name, ...breaker.stats() }));
  }

  /** Rejects every call until {@link reset}. */
  forceOpen(name: string): void {
    this.get(name).forceOpen();
  }

  /** Lets every call through and records nothing until {@link reset}. */
  disable(name: string): void {
    this.get(name).disable();
  }

  /** Back to CLOSED with an empty window. */
  reset(name: string): void {
    this.get(name).reset();
  }

  /** Adds or replaces a breaker (the module does this; replacing resets its state). */
  register(name: string, breaker: CircuitBreakerPolicy): void {
    this.subscriptions.get(name)?.dispose();
    this.breakers.set(name, breaker);
    this.subscriptions.set(name, breaker.onStateChange((event) => this.stateChanges.emit(event)));
  }
}
