import { Module, type DynamicModule } from '@nestjs/common';
import { ResilienceModule, systemClock, type Clock } from 'nest-resilience';
import { QuoteService } from './quote.service.js';
import { QuotesController } from './quotes.controller.js';
import { ResilienceAdminController, ResilienceController } from './resilience.controller.js';
import { CLOCK, SUPPLIER_DEFAULTS, SupplierService, type SupplierBehaviour } from './supplier.service.js';

/** How the sample app is built: `main.ts` reads these from the environment, tests pass them. */
export interface SampleAppOptions {
  /** The time source of the policies and the simulated supplier. @default systemClock */
  clock?: Clock;
  /** Mount the admin endpoints (force a breaker open, reset it, reset a client's limit, update a policy). @default false */
  admin?: boolean;
  /** The supplier's behaviour when a request does not set `?failRate=` / `?latencyMs=`. @default { failRate: 0, latencyMs: 80 } */
  supplier?: Partial<SupplierBehaviour>;
}

/**
 * The sample application: a small quotes API in front of a flaky, slow in-process supplier.
 *
 * @example
 * const app = await NestFactory.create(AppModule.register({ admin: true }));
 */
@Module({})
export class AppModule {
  static register(options: SampleAppOptions = {}): DynamicModule {
    const clock = options.clock ?? systemClock;
    return {
      module: AppModule,
      imports: [
        ResilienceModule.forRoot({
          isGlobal: true,
          clock,
          http: { headers: 'both' },
          // Retries of the supplier may add at most 20 % to its traffic (plus 5 a second).
          retryBudgets: { supplier: { ratio: 0.2, minRetriesPerSecond: 5 } },
          // `@Priority('low')` routes are refused first when the event loop lags this much.
          loadShedding: { eventLoopDelay: '1s' },
          // A caller's `x-request-deadline: <ms>` bounds the request (and every @Timeout in it).
          deadline: {},
          policies: {
            // One policy per downstream: its breaker and bulkhead are shared by every method naming it.
            supplier: {
              circuitBreaker: { windowSize: 10, minimumCalls: 4, failureRateThreshold: 50, openDuration: '15s' },
              retry: { maxAttempts: 3, backoff: 'exponential', delay: '100ms', maxDelay: '1s', budget: 'supplier' },
              timeout: '500ms',
              bulkhead: { maxConcurrent: 2, maxQueue: 2 },
              // A failing supplier, for rehearsals: off until enabled through ChaosRegistry (admin endpoints).
              chaos: { enabled: false, error: { rate: 1 } },
            },
          },
        }),
      ],
      controllers: [QuotesController, ResilienceController, ...(options.admin === true ? [ResilienceAdminController] : [])],
      providers: [
        { provide: CLOCK, useValue: clock },
        { provide: SUPPLIER_DEFAULTS, useValue: { failRate: 0, latencyMs: 80, ...options.supplier } satisfies SupplierBehaviour },
        SupplierService,
        QuoteService,
      ],
    };
  }
}
