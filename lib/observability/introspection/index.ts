export { ResilienceIntrospectionModule, type CircuitBreakerView, type ResilienceIntrospectionOptions } from './resilience-introspection.js';
