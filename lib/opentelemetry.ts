// The `nest-resilience/opentelemetry` entry point: span events and attributes through
// @opentelemetry/api (an optional peer dependency). The root entry point never imports this
// file, so applications without OpenTelemetry never load it nor see its types.
export {
  RESILIENCE_TRACING_OPTIONS,
  ResilienceTracing,
  ResilienceTracingModule,
  SPAN_EVENTS,
  type ResilienceTracingOptions,
} from './observability/opentelemetry/resilience-tracing.js';
