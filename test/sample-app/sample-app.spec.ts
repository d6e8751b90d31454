import type { INestApplication } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { BulkheadRegistry, CircuitBreakerRegistry, FakeClock } from 'nest-resilience';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { AppModule, type SampleAppOptions } from '../../sample-app/src/app.module.js';
import { SupplierService } from '../../sample-app/src/supplier.service.js';

type Adapter = 'express' | 'fastify';
type Response = request.Response;

interface Harness {
  app: INestApplication;
  clock: FakeClock;
  supplier: SupplierService;
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  post(path: string): Promise<Response>;
  patch(path: string, body: object): Promise<Response>;
}

const open: Harness[] = [];

/** Boots the sample AppModule on a FakeClock, as main.ts does on the real one. */
async function boot(adapter: Adapter, options: Omit<SampleAppOptions, 'clock'> = {}): Promise<Harness> {
  const clock = new FakeClock();
  const moduleRef = await Test.createTestingModule({ imports: [AppModule.register({ ...options, clock })] }).compile();
  const app =
    adapter === 'fastify'
      ? moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), { logger: false })
      : moduleRef.createNestApplication({ logger: false });
  await app.init();
  if (adapter === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  const server = app.getHttpServer();
  const harness: Harness = {
    app,
    clock,
    supplier: app.get(SupplierService),
    // `.then` starts the request: a plain promise that can be awaited later, while the clock moves.
    get: (path, headers = {}) => request(server).get(path).set(headers).then((response) => response),
    post: (path) => request(server).post(path).then((response) => response),
    patch: (path, body) => request(server).patch(path).send(body).then((response) => response),
  };
  open.push(harness);
  return harness;
}

/** Closes the apps of a test and checks that no timer of ours is left. */
async function closeAll(): Promise<void> {
  for (const harness of open.splice(0)) {
    await harness.app.close();
    // Every timer of ours (timeouts, retry sleeps, the supplier's latency) runs on the fake clock.
    expect(harness.clock.pendingTimers).toBe(0);
  }
}

// A test that failed half-way still closes its apps.
afterEach(async () => {
  for (const harness of open.splice(0)) await harness.app.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (in real time, briefly) until `condition` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !condition(); waited += 2) {
    if (waited > 3000) throw new Error(`timed out waiting until ${what}`);
    await sleep(2);
  }
}

/** Moves the fake clock in small steps until the request settles (latency, backoff, timeouts). */
async function drive<T>(clock: FakeClock, pending: Promise<T>, step = 10): Promise<T> {
  const settled = settledFlag(pending);
  for (let advanced = 0; !settled(); advanced += step) {
    if (advanced > 60_000) throw new Error('the request did not settle within 60 s of fake time');
    await sleep(1);
    await clock.advanceAsync(step);
  }
  return pending;
}

function settledFlag(pending: Promise<unknown>): () => boolean {
  let settled = false;
  void pending.then(
    () => (settled = true),
    () => (settled = true),
  );
  return () => settled;
}

describe.each<Adapter>(['express', 'fastify'])('sample app on %s', (adapter) => {
  it('answers the printed curl lines, in the printed order', async () => {
    const h = await boot(adapter, { admin: true });
    const { clock, supplier } = h;

    // curl -s /quotes: @SkipRateLimit, so no rate-limit decision and no headers.
    const symbols = await h.get('/quotes');
    expect(symbols.status).toBe(200);
    expect(symbols.body).toEqual({ symbols: ['ACME', 'GLOBEX', 'INITECH', 'HOOLI', 'UMBRELLA'] });
    expect(symbols.headers.ratelimit).toBeUndefined();
    expect(symbols.headers['x-ratelimit-limit']).toBeUndefined();

    // curl -i /quotes/ACME: a live quote and the headers of both limits.
    const live = await drive(clock, h.get('/quotes/ACME'));
    expect(live.status).toBe(200);
    expect(live.body).toMatchObject({ symbol: 'ACME', currency: 'USD', source: 'live' });
    const price = live.body.price as number;
    expect(typeof price).toBe('number');
    expect(live.headers['ratelimit-policy']).toBe('"per-second";q=10;w=1, "per-minute";q=60;w=60');
    expect(live.headers.ratelimit).toMatch(/^"per-second";r=9;t=\d+, "per-minute";r=59;t=\d+$/);
    expect(live.headers['x-ratelimit-limit']).toBe('10');
    expect(live.headers['x-ratelimit-remaining']).toBe('9');

    // ?latencyMs=2000: three attempts of 500 ms each, aborted through getAbortSignal(), then the fallback method.
    const before = clock.now();
    const slow = await drive(clock, h.get('/quotes/ACME?latencyMs=2000'));
    expect(slow.status).toBe(200);
    expect(slow.body).toEqual({ symbol: 'ACME', price, currency: 'USD', source: 'fallback', reason: 'TimeoutExceededError' });
    expect(clock.now() - before).toBeGreaterThanOrEqual(1500);
    expect(supplier.stats()).toMatchObject({ calls: 4, aborted: 3, inFlight: 0 });

    // ?failRate=1: 4 calls, 3 failed, so the supplier circuit is open: fallback without calling the supplier.
    const refused = await drive(clock, h.get('/quotes/ACME?failRate=1'));
    expect(refused.body).toEqual({ symbol: 'ACME', price, currency: 'USD', source: 'fallback', reason: 'CircuitOpenError' });
    expect(supplier.stats().calls).toBe(4);

    // /live?latencyMs=3000: 504 at 2 s exactly, not retried, the supplier's wait aborted.
    const timingOut = h.get('/quotes/ACME/live?latencyMs=3000');
    const timedOut = settledFlag(timingOut);
    await until(() => supplier.stats().inFlight === 1, 'the supplier is called');
    await clock.advanceAsync(1999);
    await sleep(5);
    expect(timedOut()).toBe(false);
    await clock.advanceAsync(1);
    const gatewayTimeout = await timingOut;
    expect(gatewayTimeout.status).toBe(504);
    expect(gatewayTimeout.body).toEqual({ statusCode: 504, error: 'Gateway Timeout', message: 'Operation timed out after 2000 ms' });
    expect(supplier.stats()).toMatchObject({ calls: 5, aborted: 4 });

    // Six concurrent /live calls on the shared `supplier` bulkhead (2 running, 2 queued): two refused at once.
    const bulkhead = h.app.get(BulkheadRegistry).get('supplier');
    const burst = Array.from({ length: 6 }, () => h.get('/quotes/GLOBEX/live?latencyMs=600'));
    await until(() => bulkhead.stats().rejected === 2 && bulkhead.stats().queued === 2, 'the bulkhead is full');
    expect(bulkhead.stats()).toMatchObject({ active: 2, queued: 2 });
    await clock.advanceAsync(600);
    await until(() => bulkhead.stats().queued === 0, 'the queued calls start');
    await clock.advanceAsync(600);
    const statuses = (await Promise.all(burst)).map((response) => response.status);
    expect(statuses.toSorted()).toEqual([200, 200, 200, 200, 503, 503]);
    const rejected = (await Promise.all(burst)).find((response) => response.status === 503)!;
    expect(rejected.body).toMatchObject({ statusCode: 503, error: 'Service Unavailable' });
    expect(rejected.body.message).toContain('Bulkhead "supplier" is full');

    // /live?failRate=1 twice: 502 (retried once), then the third failure in a row opens the live circuit: 503.
    const calls = supplier.stats().calls;
    const badGateway = await drive(clock, h.get('/quotes/ACME/live?failRate=1'));
    expect(badGateway.status).toBe(502);
    expect(supplier.stats().calls).toBe(calls + 2);
    const circuitOpen = await drive(clock, h.get('/quotes/ACME/live?failRate=1'));
    expect(circuitOpen.status).toBe(503);
    expect(circuitOpen.headers['retry-after']).toBe('15');
    expect(circuitOpen.body.message).toContain('Circuit "QuotesController.live" is open');
    expect(supplier.stats().calls).toBe(calls + 3);

    // /history on the free plan: 3 a minute, then 429 with Retry-After.
    const history = [];
    for (let i = 0; i < 4; i++) history.push(await h.get('/quotes/ACME/history'));
    expect(history.map((response) => response.status)).toEqual([200, 200, 200, 429]);
    expect(history[0]!.body).toMatchObject({ symbol: 'ACME', days: 5 });
    expect(history[3]!.headers['ratelimit-policy']).toBe('"history";q=3;w=60');
    expect(Number(history[3]!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(history[3]!.body).toMatchObject({ statusCode: 429, error: 'Too Many Requests' });

    // The pro plan: its own budget of 30.
    const pro = await h.get('/quotes/ACME/history', { 'x-api-key': 'pro-demo' });
    expect(pro.status).toBe(200);
    expect(pro.headers['ratelimit-policy']).toBe('"history";q=30;w=60');
    expect(pro.headers['x-ratelimit-remaining']).toBe('29');

    // /resilience: the registries.
    const snapshot = (await h.get('/resilience')).body;
    expect(snapshot.breakers).toEqual([
      expect.objectContaining({ name: 'supplier', state: 'OPEN', calls: 4, failures: 3 }),
      expect.objectContaining({ name: 'QuotesController.live', state: 'OPEN', consecutiveFailures: 3 }),
    ]);
    expect(snapshot.bulkheads).toEqual([{ name: 'supplier', active: 0, queued: 0, rejected: 2, timedOut: 0, aborted: 0 }]);
    expect(snapshot.rateLimiters.map((limiter: { name: string }) => limiter.name).toSorted()).toEqual([
      'QuotesController.fast',
      'QuotesController.history',
      'QuotesController.live',
      'QuotesController.quote',
    ]);
    expect(snapshot.rateLimiters.find((limiter: { name: string }) => limiter.name === 'QuotesController.quote')).toMatchObject({
      limits: [
        { name: 'per-second', limit: 10, windowMs: 1000, algorithm: 'sliding-window-counter' },
        { name: 'per-minute', limit: 60, windowMs: 60_000, algorithm: 'sliding-window-counter' },
      ],
    });
    expect(snapshot.rateLimiters.find((limiter: { name: string }) => limiter.name === 'QuotesController.history')).toMatchObject({ admitted: 4, rejected: 1 });
    expect(snapshot.policies).toEqual([expect.objectContaining({ name: 'supplier', timeout: '500ms', bulkhead: { maxConcurrent: 2, maxQueue: 2 } })]);
    expect(snapshot.supplier).toMatchObject({ inFlight: 0, defaults: { failRate: 0, latencyMs: 80 } });

    // Admin: force the live breaker open; refused without calling the supplier.
    const forced = await h.post('/resilience/breakers/QuotesController.live/open');
    expect(forced.status).toBe(200);
    expect(forced.body).toMatchObject({ name: 'QuotesController.live', state: 'FORCED_OPEN' });
    const callsBefore = supplier.stats().calls;
    const forcedOpen = await h.get('/quotes/HOOLI/live');
    expect(forcedOpen.status).toBe(503);
    expect(forcedOpen.body).toMatchObject({ statusCode: 503, message: 'Circuit "QuotesController.live" is forced open' });
    expect(supplier.stats().calls).toBe(callsBefore);

    // Reset: closed again, calls go through.
    expect((await h.post('/resilience/breakers/QuotesController.live/reset')).body).toMatchObject({ state: 'CLOSED', calls: 0 });
    expect((await drive(clock, h.get('/quotes/HOOLI/live'))).body).toMatchObject({ symbol: 'HOOLI', source: 'live' });
    expect((await h.post('/resilience/breakers/supplier/reset')).body).toMatchObject({ name: 'supplier', state: 'CLOSED' });

    // Reset one client's history budget.
    expect((await h.post('/resilience/rate-limiters/QuotesController.history/reset?key=127.0.0.1')).status).toBe(200);
    expect((await h.get('/quotes/ACME/history')).status).toBe(200);

    // Update the supplier policy at run time: 3 s per attempt instead of 500 ms.
    expect((await drive(clock, h.get('/quotes/ACME?latencyMs=2000'))).body).toMatchObject({ source: 'fallback', reason: 'TimeoutExceededError' });
    const updated = await h.patch('/resilience/policies/supplier', { timeout: '3s' });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ name: 'supplier', timeout: '3s', retry: { maxAttempts: 3 } });
    const patient = await drive(clock, h.get('/quotes/ACME?latencyMs=2000'));
    expect(patient.body).toMatchObject({ symbol: 'ACME', source: 'live' });
    await closeAll();
  });

  it('hedges /fast, honours a caller\'s deadline, and rehearses a failing supplier through ChaosRegistry', async () => {
    const h = await boot(adapter, { admin: true });
    const { clock, supplier } = h;

    // /fast?latencyMs=400: a second supplier request at 150 ms; the first answers at 400 ms and the second is aborted.
    const fast = h.get('/quotes/ACME/fast?latencyMs=400');
    await until(() => supplier.stats().inFlight === 1, 'the first supplier request');
    await clock.advanceAsync(150);
    await until(() => supplier.stats().inFlight === 2, 'the hedged request');
    await clock.advanceAsync(250);
    const hedged = await fast;
    expect(hedged.status).toBe(200);
    expect(hedged.body).toMatchObject({ symbol: 'ACME', source: 'live' });
    expect(supplier.stats()).toMatchObject({ calls: 2, aborted: 1, inFlight: 0 });

    // x-request-deadline: 300 on /live (whose own @Timeout is 2 s): 504 at 300 ms, the supplier's wait aborted.
    const bounded = h.get('/quotes/ACME/live?latencyMs=1000', { 'x-request-deadline': '300' });
    const settled = settledFlag(bounded);
    await until(() => supplier.stats().inFlight === 1, 'the supplier is called');
    await clock.advanceAsync(299);
    await sleep(5);
    expect(settled()).toBe(false);
    await clock.advanceAsync(1);
    expect((await bounded).status).toBe(504);
    expect(supplier.stats()).toMatchObject({ calls: 3, aborted: 2, inFlight: 0 });

    // Chaos: the supplier policy's faults, off until enabled; injected where the supplier would fail.
    const enabled = await h.post('/resilience/chaos/supplier/enable');
    expect(enabled.body).toMatchObject({ name: 'supplier', enabled: true });
    const rehearsed = await drive(clock, h.get('/quotes/INITECH'));
    expect(rehearsed.body).toEqual({ symbol: 'INITECH', price: null, currency: 'USD', source: 'fallback', reason: 'ChaosInjectedError' });
    expect(supplier.stats().calls).toBe(3);
    expect((await h.post('/resilience/chaos/supplier/disable')).body).toMatchObject({ enabled: false, errors: 3 });
    expect((await drive(clock, h.get('/quotes/INITECH'))).body).toMatchObject({ symbol: 'INITECH', source: 'live' });
    await closeAll();
  });

  it('enforces both limits of GET /quotes/:symbol: 10 a second and 60 a minute', async () => {
    const { clock, get } = await boot(adapter, { supplier: { latencyMs: 0 } });
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await get('/quotes/INITECH')).status);
    expect(statuses).toEqual([...Array<number>(10).fill(200), 429]);
    const perSecond = await get('/quotes/INITECH');
    expect(perSecond.status).toBe(429);
    expect(Number(perSecond.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(perSecond.headers['x-ratelimit-remaining']).toBe('0');

    // Five more seconds of ten calls each: the per-second limit has room, the per-minute one runs out at 60.
    for (let second = 0; second < 5; second++) {
      await clock.advanceAsync(2000);
      for (let i = 0; i < 10; i++) expect((await get('/quotes/INITECH')).status).toBe(200);
    }
    await clock.advanceAsync(2000);
    const perMinute = await get('/quotes/INITECH');
    expect(perMinute.status).toBe(429);
    expect(perMinute.headers.ratelimit).toMatch(/"per-minute";r=0;/);
    expect(Number(perMinute.headers['retry-after'])).toBeGreaterThan(2);
    await closeAll();
  });

  it('limits /history by plan, counting unknown API keys by IP', async () => {
    const { get } = await boot(adapter);
    const pro = { 'x-api-key': 'pro-demo' };
    for (let i = 0; i < 30; i++) expect((await get('/quotes/UMBRELLA/history', pro)).status).toBe(200);
    expect((await get('/quotes/UMBRELLA/history', pro)).status).toBe(429);

    for (let i = 0; i < 3; i++) expect((await get('/quotes/UMBRELLA/history')).status).toBe(200);
    // An invented key cannot mint a fresh budget: it is counted as the caller's IP.
    expect((await get('/quotes/UMBRELLA/history', { 'x-api-key': 'made-up' })).status).toBe(429);
    // A known free key has a budget of its own.
    expect((await get('/quotes/UMBRELLA/history', { 'x-api-key': 'free-demo' })).status).toBe(200);
    await closeAll();
  });

  it('lets the supplier circuit probe again after 15 s and close on success', async () => {
    const { app, clock, get, supplier } = await boot(adapter, { supplier: { latencyMs: 0 } });
    const failed = await drive(clock, get('/quotes/GLOBEX?failRate=1'));
    // No price was ever fetched: the fallback has nothing better than null.
    expect(failed.body).toEqual({ symbol: 'GLOBEX', price: null, currency: 'USD', source: 'fallback', reason: 'SupplierError' });
    expect(supplier.stats().calls).toBe(3);
    const openNow = await drive(clock, get('/quotes/GLOBEX?failRate=1'));
    expect(openNow.body.reason).toBe('CircuitOpenError');
    expect(supplier.stats().calls).toBe(4);
    const breakers = app.get(CircuitBreakerRegistry);
    expect(breakers.get('supplier').state).toBe('OPEN');

    await clock.advanceAsync(15_000);
    const recovered = await drive(clock, get('/quotes/GLOBEX'));
    expect(recovered.body).toMatchObject({ symbol: 'GLOBEX', source: 'live' });
    expect(breakers.get('supplier').state).toBe('CLOSED');
    await closeAll();
  });

  it('keeps the admin endpoints unmounted unless asked, and rejects bad input', async () => {
    const plain = await boot(adapter);
    expect((await plain.post('/resilience/breakers/supplier/open')).status).toBe(404);
    expect(plain.app.get(CircuitBreakerRegistry).get('supplier').state).toBe('CLOSED');
    expect((await plain.get('/resilience')).status).toBe(200);
    expect((await plain.get('/quotes/NOPE')).status).toBe(404);
    expect((await plain.get('/quotes/ACME?failRate=2')).status).toBe(400);

    const admin = await boot(adapter, { admin: true });
    const unknown = await admin.post('/resilience/breakers/nope/open');
    expect(unknown.status).toBe(404);
    expect(unknown.body.message).toContain('known: supplier, QuotesController.live');
    const invalid = await admin.patch('/resilience/policies/supplier', { retry: { maxAttempts: 0 } });
    expect(invalid.status).toBe(400);
    expect(invalid.body.message).toContain('retry.maxAttempts');
    expect((await admin.post('/resilience/rate-limiters/QuotesController.history/reset')).status).toBe(400);

    // Forcing the provider's breaker open: the provider answers from its fallback.
    expect((await admin.post('/resilience/breakers/supplier/open')).status).toBe(200);
    expect((await admin.get('/quotes/ACME')).body).toMatchObject({ source: 'fallback', reason: 'CircuitOpenError' });
    await closeAll();
  });
});
