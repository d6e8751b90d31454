import type { Event } from '../../core/events.js';
import type { Policy } from '../../core/policy.js';
import type { CircuitState } from './circuit-breaker.options.js';
import type { CircuitBreakerStats, CircuitCallEvent, CircuitStateChangeEvent, ResolvedCircuitBreakerOptions } from './circuit-breaker.policy.js';

/**
 * What every circuit breaker offers, local ({@link CircuitBreakerPolicy}) or shared by a fleet
 * (the Redis store's): registries, metrics and health checks work with this.
 */
export interface CircuitBreakerInstance extends Policy {
  /** The name in events, errors, metrics and the registry. */
  readonly name: string;
  /** The resolved options (durations in ms, defaults applied). */
  readonly options: ResolvedCircuitBreakerOptions;
  /** The current state (a shared breaker's view of the fleet's). */
  readonly state: CircuitState;
  /** A snapshot of the state and the window's counters. */
  stats(): CircuitBreakerStats;
  /** Rejects every call until reset (fleet-wide for a shared breaker, which returns a promise). */
  forceOpen(): unknown;
  /** Admits every call and records nothing until reset. */
  disable(): unknown;
  /** Back to CLOSED with an empty window. */
  reset(): unknown;
  /** Subscribes to state changes. */
  readonly onStateChange: Event<CircuitStateChangeEvent>;
  /** Subscribes to every call's outcome. */
  readonly onCall: Event<CircuitCallEvent>;
  /** Stops background work (a shared breaker's sync). */
  close?(): unknown;
}
