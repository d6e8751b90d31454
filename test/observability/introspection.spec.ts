// The introspection endpoints behind the user's guard; writes refused unless allowed.
import { Controller, Get, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { Bulkhead, CircuitBreaker, RateLimit, ResilienceModule } from 'nest-resilience';
import { ResilienceIntrospectionModule, type ResilienceIntrospectionOptions } from '../../lib/observability/introspection/index.js';
import { createApp, PLATFORMS, type Platform, type TestApp } from './support/app.js';

@Injectable()
class AdminGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const incoming = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>();
    return incoming.headers['x-admin'] === 'yes';
  }
}

@Controller('api')
class ApiController {
  @Get('pay')
  @CircuitBreaker('payments')
  pay() {
    return 'paid';
  }

  @Get('limited')
  @RateLimit({ limit: 1, window: '1m' })
  limited() {
    return 'ok';
  }

  @Get('narrow')
  @Bulkhead({ maxConcurrent: 2, maxQueue: 3 })
  narrow() {
    return 'ok';
  }
}

function isServerError(): boolean {
  return true;
}

const open: TestApp[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((app) => app.close()));
});

async function adminApp(platform: Platform, options: ResilienceIntrospectionOptions) {
  const app = await createApp(platform, {
    imports: [
      ResilienceModule.forRoot({
        policies: {
          payments: { circuitBreaker: { failureRateThreshold: 40, minimumCalls: 5, isFailure: isServerError }, retry: { maxAttempts: 3 }, timeout: '2s' },
        },
      }),
      ResilienceIntrospectionModule.register(options),
    ],
    controllers: [ApiController],
  });
  open.push(app);
  return app;
}

const admin = { 'x-admin': 'yes' };

describe.each(PLATFORMS)('ResilienceIntrospectionModule (%s)', (platform) => {
  it('shows states, counters and settings of every policy behind the guard, and refuses writes unless allowed', async () => {
    const app = await adminApp(platform, { guards: [AdminGuard] });
    expect((await request(app.server).get('/api/limited')).status).toBe(200);

    expect((await request(app.server).get('/resilience')).status).toBe(403);
    const overview = await request(app.server).get('/resilience').set(admin);
    expect(overview.status).toBe(200);
    expect(overview.body.store).toEqual({ kind: 'memory' });
    expect(overview.body.writes).toBe(false);
    const payments = overview.body.circuitBreakers.find((breaker: { name: string }) => breaker.name === 'payments');
    expect(payments).toMatchObject({ name: 'payments', state: 'CLOSED', calls: 0, failureRate: 0 });
    expect(payments.settings).toMatchObject({ failureRateThreshold: 40, minimumCalls: 5, isFailure: '[function isServerError]' });
    expect(overview.body.bulkheads).toEqual([
      { name: 'ApiController.narrow', active: 0, queued: 0, rejected: 0, timedOut: 0, aborted: 0, settings: { maxConcurrent: 2, maxQueue: 3 } },
    ]);
    expect(overview.body.rateLimiters).toEqual([{ name: 'ApiController.limited', limits: [{ name: 'default', limit: 1, windowMs: 60_000, algorithm: 'sliding-window-counter' }], admitted: 1, rejected: 0 }]);
    expect(overview.body.policies).toEqual([
      { name: 'payments', circuitBreaker: { failureRateThreshold: 40, minimumCalls: 5, isFailure: '[function isServerError]' }, retry: { maxAttempts: 3 }, timeout: '2s' },
    ]);

    expect((await request(app.server).get('/resilience/circuit-breakers/payments').set(admin)).body.state).toBe('CLOSED');
    expect((await request(app.server).get('/resilience/bulkheads/ApiController.narrow').set(admin)).body.settings).toEqual({ maxConcurrent: 2, maxQueue: 3 });
    expect((await request(app.server).get('/resilience/rate-limiters/ApiController.limited').set(admin)).body.admitted).toBe(1);
    expect((await request(app.server).get('/resilience/policies/payments').set(admin)).body.retry).toEqual({ maxAttempts: 3 });
    const missing = await request(app.server).get('/resilience/circuit-breakers/nope').set(admin);
    expect(missing.status).toBe(404);
    expect(missing.body.message).toBe('No circuit breaker named "nope"; known: payments');

    const refused = await request(app.server).post('/resilience/circuit-breakers/payments/force-open').set(admin);
    expect(refused.status).toBe(403);
    expect(refused.body.message).toMatch(/allowWrites: true/);
    expect((await request(app.server).post('/resilience/rate-limiters/ApiController.limited/reset').set(admin).send({ key: '127.0.0.1' })).status).toBe(403);
    expect((await request(app.server).get('/api/pay')).status).toBe(200);
  });

  it('forces open, disables and resets a breaker, and resets a rate-limit key, when writes are allowed', async () => {
    const app = await adminApp(platform, { path: 'admin/resilience', guards: [AdminGuard], allowWrites: true });
    expect((await request(app.server).post('/admin/resilience/circuit-breakers/payments/force-open')).status).toBe(403);

    const forced = await request(app.server).post('/admin/resilience/circuit-breakers/payments/force-open').set(admin);
    expect([forced.status, forced.body.state]).toEqual([200, 'FORCED_OPEN']);
    expect((await request(app.server).get('/api/pay')).status).toBe(503);
    const disabled = await request(app.server).post('/admin/resilience/circuit-breakers/payments/disable').set(admin);
    expect([disabled.status, disabled.body.state]).toEqual([200, 'DISABLED']);
    const reset = await request(app.server).post('/admin/resilience/circuit-breakers/payments/reset').set(admin);
    expect([reset.status, reset.body.state]).toEqual([200, 'CLOSED']);
    expect((await request(app.server).get('/api/pay')).status).toBe(200);
    expect((await request(app.server).post('/admin/resilience/circuit-breakers/nope/reset').set(admin)).status).toBe(404);

    expect((await request(app.server).get('/api/limited')).status).toBe(200);
    expect((await request(app.server).get('/api/limited')).status).toBe(429);
    const badRequest = await request(app.server).post('/admin/resilience/rate-limiters/ApiController.limited/reset').set(admin).send({});
    expect(badRequest.status).toBe(400);
    const cleared = await request(app.server).post('/admin/resilience/rate-limiters/ApiController.limited/reset').set(admin).send({ key: '127.0.0.1' });
    expect([cleared.status, cleared.body]).toEqual([200, { name: 'ApiController.limited', key: '127.0.0.1', reset: true }]);
    expect((await request(app.server).get('/api/limited')).status).toBe(200);
  });
});
