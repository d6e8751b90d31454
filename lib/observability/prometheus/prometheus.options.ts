import type { ModuleMetadata } from '@nestjs/common';
import type { Registry } from 'prom-client';

/** Options of `ResiliencePrometheusModule.forRoot`. */
export interface ResiliencePrometheusOptions {
  /** Where the metrics are registered. @default prom-client's default registry (`register`) */
  registry?: Registry;
  /** Prepended to every metric name. @default 'resilience_' */
  prefix?: string;
  /**
   * Buckets of `<prefix>circuit_breaker_call_duration_seconds`, in seconds. Used by the first
   * module that registers the histogram on a registry; later ones reuse it.
   * @default [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
   */
  buckets?: number[];
  /**
   * Mounts a controller answering `GET /<path>` with the registry's metrics in the Prometheus
   * text format. Off by default: most applications already serve `/metrics`.
   * @default undefined (no controller)
   */
  path?: string;
}

/** Options of `ResiliencePrometheusModule.forRootAsync`. */
export interface ResiliencePrometheusAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  /** Providers whose values are passed to `useFactory`. */
  // oxlint-disable-next-line no-explicit-any
  inject?: any[];
  /** Builds the options (the registry from your own provider, say). `path` is not read here: set it in `path` below. */
  useFactory: (...args: never[]) => Omit<ResiliencePrometheusOptions, 'path'> | Promise<Omit<ResiliencePrometheusOptions, 'path'>>;
  /** As in {@link ResiliencePrometheusOptions.path}; known when the module is defined, since it mounts a route. */
  path?: string;
}
