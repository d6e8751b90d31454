import { Controller, Get } from '@nestjs/common';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Bulkhead, CircuitBreaker, CircuitBreakerRegistry, RateLimit, ResilienceModule } from 'nest-resilience';
import { RedisStore, SharedCircuitBreaker } from '../../lib/redis.js';
import { createApp, type TestApp } from '../nest/http/support/app.js';

const prefix = `fleet-${process.pid}-${Date.now()}:`;

@Controller('fleet')
class FleetController {
  @Get('limited')
  @RateLimit({ limit: 25, window: '1m', key: 'global' })
  limited(): string {
    return 'ok';
  }

  @Get('shared')
  @CircuitBreaker({ shared: true, consecutiveFailures: 3, openDuration: '1m', syncInterval: '50ms' })
  @Bulkhead({ distributed: true, maxConcurrent: 2 })
  shared(): never {
    throw new Error('downstream down');
  }
}

function fleetModule() {
  return ResilienceModule.forRoot({ store: new RedisStore({ url: inject('redisUrl'), keyPrefix: prefix, commandTimeout: '500ms' }) });
}

describe('two Nest apps (Express and Fastify) sharing one Redis', () => {
  let apps: TestApp[];
  beforeAll(async () => {
    apps = [
      await createApp('express', { imports: [fleetModule()], controllers: [FleetController] }),
      await createApp('fastify', { imports: [fleetModule()], controllers: [FleetController] }),
    ];
  });
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });

  it('a limit of N admits exactly N across both apps under a concurrent flood', async () => {
    const responses = await Promise.all(Array.from({ length: 120 }, (_, i) => request(apps[i % 2]!.server).get('/fleet/limited')));
    const byStatus = (status: number) => responses.filter((response) => response.status === status).length;
    const perApp = apps.map((_, index) => responses.filter((response, i) => i % 2 === index && response.status === 200).length);
    console.log(`[fleet] 120 concurrent requests over Express + Fastify sharing one Redis: ${byStatus(200)} admitted (${perApp.join(' + ')}) / limit 25, ${byStatus(429)} refused`);
    expect(byStatus(200)).toBe(25);
    expect(byStatus(429)).toBe(95);
    expect(Math.min(...perApp)).toBeGreaterThan(0);
  });

  it('a shared breaker opened by one app refuses calls in the other', async () => {
    for (let i = 0; i < 3; i++) await request(apps[0]!.server).get('/fleet/shared').expect(500);
    const [first, second] = apps.map((app) => app.app.get(CircuitBreakerRegistry).get('FleetController.shared'));
    expect(first).toBeInstanceOf(SharedCircuitBreaker);
    expect(second).toBeInstanceOf(SharedCircuitBreaker);
    await (first as SharedCircuitBreaker).sync();
    const breaker = second as SharedCircuitBreaker;
    await breaker.sync();
    expect(breaker.state).toBe('OPEN');
    const refused = await request(apps[1]!.server).get('/fleet/shared').expect(503);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });
});
