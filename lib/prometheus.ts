// The `nest-resilience/prometheus` entry point: Prometheus metrics through prom-client (an
// optional peer dependency). The root entry point never imports this file, so applications
// without prom-client never load it nor see its types.
export { ResiliencePrometheusModule } from './observability/prometheus/resilience-prometheus.module.js';
export { ResiliencePrometheusCollector, RESILIENCE_PROMETHEUS_OPTIONS } from './observability/prometheus/resilience-prometheus.collector.js';
export { ResilienceMetrics, DEFAULT_DURATION_BUCKETS } from './observability/prometheus/prometheus.metrics.js';
export type { ResiliencePrometheusAsyncOptions, ResiliencePrometheusOptions } from './observability/prometheus/prometheus.options.js';
