// The `nest-resilience/terminus` entry point: health indicators for @nestjs/terminus (an optional
// peer dependency). The root entry point never imports this file, so applications without
// terminus never load it nor see its types.
export { ResilienceHealthModule } from './observability/health/resilience-health.module.js';
export {
  CircuitBreakerHealthIndicator,
  ResilienceStoreHealthIndicator,
  type CircuitBreakerHealthDetails,
  type CircuitBreakerHealthOptions,
  type ResilienceStoreHealthOptions,
} from './observability/health/resilience.health.js';
