import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { CircuitBreakerHealthIndicator, ResilienceStoreHealthIndicator } from './resilience.health.js';

/**
 * The health indicators of nest-resilience for `@nestjs/terminus` (an optional peer dependency):
 * import it in the module of your health controller, next to `TerminusModule`.
 *
 * @example
 * \@Module({ imports: [TerminusModule, ResilienceHealthModule], controllers: [HealthController] })
 * export class HealthModule {}
 */
@Module({
  imports: [TerminusModule],
  providers: [CircuitBreakerHealthIndicator, ResilienceStoreHealthIndicator],
  exports: [CircuitBreakerHealthIndicator, ResilienceStoreHealthIndicator],
})
export class ResilienceHealthModule {}
