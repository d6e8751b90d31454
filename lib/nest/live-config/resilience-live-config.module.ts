import { Module } from '@nestjs/common';
import { ResilienceLiveConfigConfigurableModule } from './live-config.module-definition.js';
import { ResilienceLiveConfig } from './resilience-live-config.service.js';

/**
 * Fleet-wide live configuration of the named policies over Redis: import it once, next to
 * `ResilienceModule`, with `forRoot({ redis, channel?, key? })` or `forRootAsync({ useFactory, inject })`.
 * See `docs/live-config.md`.
 *
 * @example
 * \@Module({
 *   imports: [
 *     ResilienceModule.forRoot({ isGlobal: true, policies: { payments: { retry: { maxAttempts: 3 } } } }),
 *     ResilienceLiveConfigModule.forRoot({ redis: process.env.REDIS_URL! }),
 *   ],
 * })
 * export class AppModule {}
 */
@Module({
  providers: [ResilienceLiveConfig],
  exports: [ResilienceLiveConfig],
})
export class ResilienceLiveConfigModule extends ResilienceLiveConfigConfigurableModule {}
