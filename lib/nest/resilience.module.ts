import { Inject, Module, type DynamicModule, type MiddlewareConsumer, type NestModule, type Provider } from '@nestjs/common';
import { DeadlineMiddleware } from './deadline/deadline.middleware.js';
import { APP_GUARD, DiscoveryModule } from '@nestjs/core';
import { GlobalRateLimitGuard, RateLimitGuard } from './enhancers/rate-limit.guard.js';
import { ResilienceInterceptor } from './enhancers/resilience.interceptor.js';
import { ResilienceExplorer } from './explorer/resilience.explorer.js';
import { BulkheadRegistry } from './registries/bulkhead.registry.js';
import { ChaosRegistry } from './registries/chaos.registry.js';
import { CircuitBreakerRegistry } from './registries/circuit-breaker.registry.js';
import { RateLimiterRegistry } from './registries/rate-limiter.registry.js';
import { ResilienceRegistry } from './registries/resilience.registry.js';
import { GLOBAL_RATE_LIMIT } from './resilience.constants.js';
import { RESILIENCE_ASYNC_OPTIONS_TYPE, RESILIENCE_MODULE_OPTIONS, RESILIENCE_OPTIONS_TYPE, ResilienceConfigurableModule } from './resilience.module-definition.js';
import type { RateLimitSettings, ResilienceModuleOptions } from './resilience.options.js';
import { ResilienceService } from './resilience.service.js';
import { ResilienceEvents } from './resilience.events.js';

const EXPORTED = [
  ResilienceService,
  ResilienceEvents,
  CircuitBreakerRegistry,
  BulkheadRegistry,
  RateLimiterRegistry,
  ResilienceRegistry,
  ChaosRegistry,
  RateLimitGuard,
  ResilienceInterceptor,
];

/**
 * The module: `ResilienceModule.forRoot(options)` or `forRootAsync({ imports, inject, useFactory })`.
 * Import it once with `isGlobal: true` (or in every module whose controllers use the decorators).
 *
 * @example
 * ResilienceModule.forRoot({
 *   isGlobal: true,
 *   policies: { payments: { circuitBreaker: { failureRateThreshold: 50 }, retry: { maxAttempts: 3 }, timeout: '2s' } },
 * })
 */
@Module({
  imports: [DiscoveryModule],
  providers: [...EXPORTED, ResilienceExplorer],
  exports: EXPORTED,
})
export class ResilienceModule extends ResilienceConfigurableModule implements NestModule {
  /** Built by Nest. */
  constructor(@Inject(RESILIENCE_MODULE_OPTIONS) private readonly options: ResilienceModuleOptions) {
    super();
  }

  /** Applies the deadline middleware to every route when the `deadline` option is set; nothing otherwise. */
  configure(consumer: MiddlewareConsumer): void {
    if (this.options.deadline !== undefined) consumer.apply(DeadlineMiddleware).forRoutes('{*path}');
  }

  /** Configures the module with options known now. */
  static override forRoot(options: typeof RESILIENCE_OPTIONS_TYPE = {}): DynamicModule {
    return withGlobalLimit(super.forRoot(options), options.globalRateLimit);
  }

  /** Configures the module with options from a factory, a class or an existing provider (`ConfigService`...). */
  static override forRootAsync(options: typeof RESILIENCE_ASYNC_OPTIONS_TYPE): DynamicModule {
    return withGlobalLimit(super.forRootAsync(options), options.globalRateLimit);
  }
}

function withGlobalLimit(definition: DynamicModule, globalRateLimit: string | RateLimitSettings | undefined): DynamicModule {
  if (globalRateLimit === undefined) return definition;
  const providers: Provider[] = [{ provide: GLOBAL_RATE_LIMIT, useValue: globalRateLimit }, GlobalRateLimitGuard, { provide: APP_GUARD, useExisting: GlobalRateLimitGuard }];
  return { ...definition, providers: [...(definition.providers ?? []), ...providers] };
}
