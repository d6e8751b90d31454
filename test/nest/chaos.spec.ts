// @Chaos through real applications on Express and Fastify: injected failures open a breaker behind
// a retry, ChaosRegistry switches injection at run time, and production keeps it off unless the
// module allows it.
import { Controller, Get } from '@nestjs/common';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  Chaos,
  ChaosRegistry,
  CircuitBreaker,
  CircuitBreakerRegistry,
  FakeClock,
  getAbortSignal,
  isChaosNotAllowedError,
  ResilienceModule,
  Retry,
  type ChaosModuleOptions,
} from 'nest-resilience';
import { createApp, driveClock, PLATFORMS, statuses, type TestApp } from './http/support/app.js';

const calls: Record<string, number> = {};
const count = (name: string): number => (calls[name] = (calls[name] ?? 0) + 1);

@Controller('chaos')
class ChaosController {
  @Get('quote')
  @Chaos({ error: { rate: 1 } })
  @Retry({ maxAttempts: 2, delay: 0, jitter: 'none' })
  @CircuitBreaker({ consecutiveFailures: 4, openDuration: '30s' })
  quote() {
    count('quote');
    return { price: 42 };
  }

  @Get('slow')
  @Chaos('slow-dependency')
  slow() {
    count('slow');
    return { ok: true };
  }

  @Get('dropped')
  @Chaos({ abort: { rate: 1 } })
  dropped() {
    count('dropped');
    const signal = getAbortSignal();
    // Aborted before the handler ran would mean the fault never reached work in flight.
    if (signal === undefined || signal.aborted) return count('dropped.notInFlight');
    return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('connection dropped'))));
  }
}

async function build(platform: (typeof PLATFORMS)[number], clock: FakeClock, chaos?: ChaosModuleOptions): Promise<TestApp> {
  return createApp(platform, {
    imports: [
      ResilienceModule.forRoot({
        clock,
        ...(chaos === undefined ? {} : { chaos }),
        policies: { 'slow-dependency': { chaos: { latency: { rate: 1, delay: '2s' } } } },
      }),
    ],
    controllers: [ChaosController],
  });
}

const reset = () => {
  for (const key of Object.keys(calls)) delete calls[key];
};

describe.each(PLATFORMS)('@Chaos over %s', (platform) => {
  describe('outside production', () => {
    let clock: FakeClock;
    let t: TestApp;
    let registry: ChaosRegistry;

    beforeAll(async () => {
      clock = new FakeClock();
      t = await build(platform, clock);
      registry = t.app.get(ChaosRegistry);
    });
    afterAll(() => t.close());
    beforeEach(reset);

    it('injected failures are retried and open the breaker; disabling chaos at run time restores 200s', async () => {
      // 2 requests × 2 attempts: 4 failures in a row open the circuit; the method never runs.
      expect(await statuses(t.server, ['/chaos/quote', '/chaos/quote'])).toEqual([500, 500]);
      const refused = await request(t.server).get('/chaos/quote');
      expect(refused.status).toBe(503);
      expect(refused.headers['retry-after']).toBe('30');
      expect(calls.quote).toBeUndefined();
      expect(registry.list()).toContainEqual({ name: 'ChaosController.quote', enabled: true, calls: 4, latency: 0, errors: 4, aborts: 0 });
      expect(t.app.get(CircuitBreakerRegistry).get('ChaosController.quote').state).toBe('OPEN');

      registry.disable();
      expect(registry.get('ChaosController.quote').enabled).toBe(false);
      clock.advance(30_000);
      expect(await statuses(t.server, ['/chaos/quote', '/chaos/quote', '/chaos/quote'])).toEqual([200, 200, 200]);
      expect(calls.quote).toBe(3);

      registry.enable('ChaosController.quote');
      expect((await request(t.server).get('/chaos/quote')).status).toBe(500);
      expect(calls.quote).toBe(3);
      // Every policy back on (the disable above reached them all), but this route's.
      registry.enable();
      registry.disable('ChaosController.quote');
      expect(registry.list().map(({ name, enabled }) => ({ name, enabled }))).toEqual(
        expect.arrayContaining([
          { name: 'slow-dependency', enabled: true },
          { name: 'ChaosController.quote', enabled: false },
        ]),
      );
    });

    it('a named policy delays calls on the clock, and is reconfigured through the registry', async () => {
      expect(registry.has('slow-dependency')).toBe(true);
      const started = clock.now();
      const pending = request(t.server).get('/chaos/slow');
      const response = await driveClock(clock, pending, 250);
      expect(response.status).toBe(200);
      expect(clock.now() - started).toBeGreaterThanOrEqual(2000);
      expect(calls.slow).toBe(1);
      expect(clock.pendingTimers).toBe(0);

      registry.update('slow-dependency', { error: { rate: 1 } });
      expect((await request(t.server).get('/chaos/slow')).status).toBe(500);
      expect(calls.slow).toBe(1);
      expect(() => registry.update('slow-dependency', { error: { rate: 3 } })).toThrow('invalid option "error.rate": got 3');
      expect((await request(t.server).get('/chaos/slow')).status).toBe(500);
      expect(() => registry.update('nope', {})).toThrow('No chaos policy named "nope"');
      registry.update('slow-dependency', {});
      expect((await request(t.server).get('/chaos/slow')).status).toBe(200);
    });

    it('an injected abort fires the method\'s AbortSignal and answers 503', async () => {
      const response = await request(t.server).get('/chaos/dropped');
      expect(response.status).toBe(503);
      expect(calls.dropped).toBe(1);
      expect(calls['dropped.notInFlight']).toBeUndefined();
      expect(clock.pendingTimers).toBe(0);
    });
  });

  describe('with NODE_ENV=production', () => {
    const original = process.env.NODE_ENV;
    let clock: FakeClock;
    let apps: TestApp[] = [];

    beforeEach(() => {
      process.env.NODE_ENV = 'production';
      clock = new FakeClock();
      reset();
    });
    afterEach(async () => {
      await Promise.all(apps.map((app) => app.close()));
      apps = [];
      process.env.NODE_ENV = original;
    });

    it('injects nothing, and enable() throws saying what to set', async () => {
      const t = await build(platform, clock);
      apps.push(t);
      const registry = t.app.get(ChaosRegistry);
      expect(await statuses(t.server, ['/chaos/quote', '/chaos/quote', '/chaos/quote', '/chaos/quote', '/chaos/quote'])).toEqual([200, 200, 200, 200, 200]);
      expect(calls.quote).toBe(5);
      expect(registry.list().map(({ name, enabled }) => ({ name, enabled }))).toEqual(
        expect.arrayContaining([
          { name: 'slow-dependency', enabled: false },
          { name: 'ChaosController.quote', enabled: false },
        ]),
      );

      let error: unknown;
      try {
        registry.enable();
      } catch (thrown) {
        error = thrown;
      }
      expect(isChaosNotAllowedError(error)).toBe(true);
      expect((error as Error).message).toContain('chaos: { allowInProduction: true }');
      expect(() => registry.enable('ChaosController.quote')).toThrow('allowInProduction');
      expect(() => registry.update('slow-dependency', { enabled: true })).toThrow('allowInProduction');
      expect(registry.list().every((chaos) => !chaos.enabled)).toBe(true);
      expect((await request(t.server).get('/chaos/quote')).status).toBe(200);
    });

    it('injects when the module sets chaos: { allowInProduction: true }', async () => {
      const t = await build(platform, clock, { allowInProduction: true });
      apps.push(t);
      const registry = t.app.get(ChaosRegistry);
      expect((await request(t.server).get('/chaos/quote')).status).toBe(500);
      registry.disable();
      expect((await request(t.server).get('/chaos/quote')).status).toBe(200);
      expect(() => registry.enable()).not.toThrow();
      expect((await request(t.server).get('/chaos/quote')).status).toBe(500);
      expect(calls.quote).toBe(1);
    });
  });
});
