export {
  CircuitBreakerPolicy,
  defaultIsFailure,
  type CircuitBreakerStats,
  type CircuitCallEvent,
  type CircuitCallOutcome,
  type CircuitStateChangeEvent,
  type CircuitStateChangeReason,
  type ResolvedCircuitBreakerOptions,
} from './circuit-breaker.policy.js';
export { CircuitOpenError, isCircuitOpenError } from './circuit-breaker.error.js';
export type { CircuitBreakerInstance } from './circuit-breaker.instance.js';
export type { CircuitBreakerOptions, CircuitState } from './circuit-breaker.options.js';
