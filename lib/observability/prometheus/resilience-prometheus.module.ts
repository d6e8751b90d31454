import { Controller, Get, Module, Res, type DynamicModule, type Provider, type Type } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { ResiliencePrometheusAsyncOptions, ResiliencePrometheusOptions } from './prometheus.options.js';
import { RESILIENCE_PROMETHEUS_OPTIONS, ResiliencePrometheusCollector } from './resilience-prometheus.collector.js';

/**
 * Prometheus metrics of every policy, through `prom-client` (an optional peer dependency).
 * Import it once, next to `ResilienceModule`; the metrics and their labels are listed in
 * `docs/observability.md`.
 *
 * Metrics are registered on the given registry (prom-client's default one otherwise). A second
 * application registering on the same registry (tests build many) reuses the metrics already
 * there instead of failing with a duplicate-registration error; counters then add up across
 * the applications, and gauges report the applications still running.
 *
 * @example
 * \@Module({
 *   imports: [ResilienceModule.forRoot({ isGlobal: true }), ResiliencePrometheusModule.forRoot({ path: 'metrics' })],
 * })
 * export class AppModule {}
 */
@Module({})
export class ResiliencePrometheusModule {
  /** Registers the metrics with options known now. */
  static forRoot(options: ResiliencePrometheusOptions = {}): DynamicModule {
    return definition([{ provide: RESILIENCE_PROMETHEUS_OPTIONS, useValue: options }], [], options.path);
  }

  /** Registers the metrics with options from a factory (a registry from your own provider, say). */
  static forRootAsync(options: ResiliencePrometheusAsyncOptions): DynamicModule {
    const provider: Provider = { provide: RESILIENCE_PROMETHEUS_OPTIONS, useFactory: options.useFactory as (...args: unknown[]) => unknown, inject: options.inject ?? [] };
    return definition([provider], options.imports ?? [], options.path);
  }
}

function definition(providers: Provider[], imports: DynamicModule['imports'], path: string | undefined): DynamicModule {
  return {
    module: ResiliencePrometheusModule,
    imports,
    providers: [...providers, ResiliencePrometheusCollector],
    exports: [ResiliencePrometheusCollector],
    controllers: path === undefined ? [] : [metricsController(path)],
  };
}

/** A controller answering `GET /<path>` with the registry's text, on Express and Fastify alike. */
function metricsController(path: string): Type<unknown> {
  @Controller(path)
  class ResilienceMetricsController {
    constructor(
      private readonly collector: ResiliencePrometheusCollector,
      private readonly adapterHost: HttpAdapterHost,
    ) {}

    @Get()
    async metrics(@Res({ passthrough: true }) response: unknown): Promise<string> {
      this.adapterHost.httpAdapter.setHeader(response, 'Content-Type', this.collector.registry.contentType);
      return this.collector.scrape();
    }
  }
  return ResilienceMetricsController;
}
