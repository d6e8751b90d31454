import type { ModuleRef } from '@nestjs/core';
import { BulkheadRegistry } from '../../nest/registries/bulkhead.registry.js';
import { CircuitBreakerRegistry } from '../../nest/registries/circuit-breaker.registry.js';
import { RateLimiterRegistry } from '../../nest/registries/rate-limiter.registry.js';
import { ResilienceRegistry } from '../../nest/registries/resilience.registry.js';
import { ResilienceEvents } from '../../nest/resilience.events.js';
import { ResilienceService } from '../../nest/resilience.service.js';
import type { ResilienceStore } from '../../stores/store.interface.js';

/** What the observability integrations read from the application's ResilienceModule. */
export interface ResilienceRefs {
  readonly events: ResilienceEvents;
  readonly breakers: CircuitBreakerRegistry;
  readonly bulkheads: BulkheadRegistry;
  readonly limiters: RateLimiterRegistry;
  readonly policies: ResilienceRegistry;
  readonly store: ResilienceStore;
}

/**
 * Finds the ResilienceModule's providers anywhere in the application, so an integration works
 * whether or not the module was registered with `isGlobal: true`.
 * @throws Error saying how to fix it when no ResilienceModule is imported.
 */
export function resolveResilience(moduleRef: ModuleRef, integration: string): ResilienceRefs {
  const find = <T>(token: abstract new (...args: never[]) => T): T => {
    try {
      return moduleRef.get(token as never, { strict: false }) as T;
    } catch {
      throw new Error(`${integration} needs ResilienceModule: import ResilienceModule.forRoot() (or forRootAsync()) in the application.`);
    }
  };
  return {
    events: find(ResilienceEvents),
    breakers: find(CircuitBreakerRegistry),
    bulkheads: find(BulkheadRegistry),
    limiters: find(RateLimiterRegistry),
    policies: find(ResilienceRegistry),
    store: find(ResilienceService).store,
  };
}
