import type { Event } from '../../core/events.js';
import type { Policy } from '../../core/policy.js';
import type { CircuitState } from './circuit-breaker.options.js';
import type { CircuitBreakerStats, CircuitCallEvent, CircuitStateChangeEvent, ResolvedCircuitBreakerOptions } from './circuit-breaker.policy.js';

/**
 * What every circuit breaker offers, local ({@link CircuitBreakerPolicy}) or shared by a fleet
 * (the Redis store's): registries, metrics and health checks work with this.
 */
export interface CircuitBreakerInstance extends Policy {
  readonly name: string;
  /** The resolved options (durations in ms, defaults applied). */
  readonly options: ResolvedCircuitBreakerOptions;
  readonly state: CircuitState;
  stats(): CircuitBreakerStats;
  /** Rejects every call until reset (fleet-wide for a shared breaker, which returns a promise). */
  forceOpen(): unknown;
  /** Admits every call and records nothing until reset. */
  disable(): unknown;
  /** Back to CLOSED with an empty window. */
  reset(): unknown;
  readonly onStateChange: Event<CircuitStateChangeEvent>;
  readonly onCall: Event<CircuitCallEvent>;
  /** Stops background work (a shared breaker's sync). */
  close?(): unknown;
}
