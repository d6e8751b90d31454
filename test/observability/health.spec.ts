// The @nestjs/terminus health indicators through a real /health endpoint.
import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { CircuitBreaker, CircuitBreakerRegistry, MemoryStore, ResilienceModule, type ConsumeMode, type LimitSpec, type RateLimitDecision, type PolicyDefinition, type ResilienceStore } from 'nest-resilience';
import { CircuitBreakerHealthIndicator, ResilienceHealthModule, ResilienceStoreHealthIndicator } from '../../lib/terminus.js';
import { createApp, PLATFORMS, type TestApp } from './support/app.js';

/** A store whose backend can be made unreachable (`ping()` rejects) or slow (`ping()` hangs). */
class PingableStore implements ResilienceStore {
  readonly kind = 'pingable';
  private readonly inner = new MemoryStore();
  mode: 'up' | 'down' | 'hang' = 'up';

  consume(key: string, limits: readonly LimitSpec[], cost: number, mode: ConsumeMode, nowMs: number): RateLimitDecision {
    return this.inner.consume(key, limits, cost, mode, nowMs);
  }

  reset(key: string, limits: readonly LimitSpec[]): void {
    this.inner.reset(key, limits);
  }

  ping(): Promise<void> {
    if (this.mode === 'down') return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379'));
    if (this.mode === 'hang') return new Promise(() => undefined);
    return Promise.resolve();
  }
}

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly breakers: CircuitBreakerHealthIndicator,
    private readonly store: ResilienceStoreHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  all() {
    return this.health.check([() => this.breakers.isHealthy('circuits'), () => this.store.isHealthy('store', { timeout: 50 })]);
  }

  @Get('payments')
  @HealthCheck()
  payments() {
    return this.health.check([() => this.breakers.isHealthy('payments', { breakers: ['payments'] })]);
  }

  @Get('misspelt')
  @HealthCheck()
  misspelt() {
    return this.health.check([() => this.breakers.isHealthy('circuits', { breakers: ['paymnets'] })]);
  }
}

@Controller('api')
class ApiController {
  @Get('search')
  @CircuitBreaker('search')
  search(): never {
    throw new Error('search down');
  }
}

const open: TestApp[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((app) => app.close()));
});

async function healthApp(platform: (typeof PLATFORMS)[number], store?: ResilienceStore) {
  const breaker: PolicyDefinition = { circuitBreaker: { consecutiveFailures: 1, openDuration: '1m' } };
  const app = await createApp(platform, {
    imports: [
      ResilienceModule.forRoot({ ...(store ? { store } : {}), policies: { payments: breaker, search: breaker } }),
      TerminusModule.forRoot({ logger: false }),
      ResilienceHealthModule,
    ],
    controllers: [HealthController, ApiController],
  });
  open.push(app);
  return app;
}

describe.each(PLATFORMS)('health indicators (%s)', (platform) => {
  it('is up while every breaker is closed, down with details when one opens, up again after a reset', async () => {
    const app = await healthApp(platform);
    const up = await request(app.server).get('/health');
    expect(up.status).toBe(200);
    expect(up.body.status).toBe('ok');
    expect(up.body.details.circuits).toEqual({
      status: 'up',
      breakers: { payments: { state: 'CLOSED', failureRate: 0, calls: 0 }, search: { state: 'CLOSED', failureRate: 0, calls: 0 } },
    });
    expect(up.body.details.store).toEqual({ status: 'up', store: 'memory' });

    // A real failure trips the search breaker (consecutiveFailures: 1).
    expect((await request(app.server).get('/api/search')).status).toBe(500);
    const down = await request(app.server).get('/health');
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('error');
    expect(down.body.error.circuits.status).toBe('down');
    expect(down.body.error.circuits.unhealthy).toEqual(['search']);
    expect(down.body.error.circuits.breakers.search).toMatchObject({ state: 'OPEN', failureRate: 100, calls: 1 });
    expect(down.body.error.circuits.breakers.search.openUntilMs).toBeGreaterThan(0);
    expect(down.body.error.circuits.breakers.payments.state).toBe('CLOSED');

    // A check naming only the payments breaker is not affected by search.
    const payments = await request(app.server).get('/health/payments');
    expect(payments.status).toBe(200);
    expect(Object.keys(payments.body.details.payments.breakers)).toEqual(['payments']);

    // FORCED_OPEN counts as down too.
    const registry = app.app.get(CircuitBreakerRegistry);
    registry.forceOpen('payments');
    const forced = await request(app.server).get('/health/payments');
    expect(forced.status).toBe(503);
    expect(forced.body.error.payments.breakers.payments.state).toBe('FORCED_OPEN');

    registry.reset('payments');
    registry.reset('search');
    expect((await request(app.server).get('/health')).status).toBe(200);
  });

  it('reports a breaker name that does not exist as down', async () => {
    const app = await healthApp(platform);
    const response = await request(app.server).get('/health/misspelt');
    expect(response.status).toBe(503);
    expect(response.body.error.circuits).toEqual({ status: 'down', breakers: { paymnets: { state: 'UNKNOWN' } }, unhealthy: ['paymnets'] });
  });

  it('is down when the store does not answer its ping, or answers too late', async () => {
    const store = new PingableStore();
    const app = await healthApp(platform, store);
    expect((await request(app.server).get('/health')).body.details.store).toEqual({ status: 'up', store: 'pingable' });

    store.mode = 'down';
    const refused = await request(app.server).get('/health');
    expect(refused.status).toBe(503);
    expect(refused.body.error.store).toEqual({ status: 'down', store: 'pingable', message: 'connect ECONNREFUSED 127.0.0.1:6379' });

    store.mode = 'hang';
    const slow = await request(app.server).get('/health');
    expect(slow.status).toBe(503);
    expect(slow.body.error.store).toEqual({ status: 'down', store: 'pingable', message: 'no answer within 50 ms' });

    store.mode = 'up';
    expect((await request(app.server).get('/health')).status).toBe(200);
  });
});
