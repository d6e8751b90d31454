// N4: app.close() with bulkhead waiters queued, a timeout pending and a retry sleeping in flight
// returns quickly, every pending request settles with a typed rejection (503), and no timer of
// ours is left.
import { Controller, Get } from '@nestjs/common';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { Bulkhead, BulkheadRegistry, FakeClock, getAbortSignal, ResilienceModule, Retry, Timeout } from 'nest-resilience';
import { ResilienceService } from '../../../lib/nest/resilience.service.js';
import { createApp, gate, PLATFORMS, until } from './support/app.js';

let held = gate();
let retryAttempts = 0;
let slowStarted = 0;
let heldStarted = 0;

@Controller('shutdown')
class ShutdownController {
  @Get('held')
  @Timeout('10m')
  @Bulkhead({ maxConcurrent: 1, maxQueue: 5 })
  async held() {
    heldStarted++;
    await held.promise;
    return { ok: true };
  }

  @Get('slow')
  @Timeout('1m')
  slow() {
    slowStarted++;
    const signal = getAbortSignal()!;
    return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error)));
  }

  @Get('retrying')
  @Retry({ maxAttempts: 5, delay: '20s', backoff: 'constant', jitter: 'none' })
  retrying() {
    retryAttempts++;
    throw new Error('transient');
  }
}

const unavailable = { statusCode: 503, error: 'Service Unavailable', message: expect.any(String) };

describe.each(PLATFORMS)('shutdown over %s', (platform) => {
  it('app.close() settles bulkhead waiters, pending timeouts and retry sleeps at once, leaving no timer', async () => {
    held = gate();
    retryAttempts = slowStarted = heldStarted = 0;
    const clock = new FakeClock();
    const t = await createApp(platform, { imports: [ResilienceModule.forRoot({ clock })], controllers: [ShutdownController] });
    const bulkhead = t.app.get(BulkheadRegistry).get('ShutdownController.held');
    const send = (path: string) => request(t.server).get(path).then((response) => response);

    const running = send('/shutdown/held');
    await until(() => heldStarted === 1);
    const waiters = [send('/shutdown/held'), send('/shutdown/held')];
    await until(() => bulkhead.stats().queued === 2);
    const slow = send('/shutdown/slow');
    await until(() => slowStarted === 1);
    const retrying = send('/shutdown/retrying');
    await until(() => retryAttempts === 1 && clock.pendingTimers === 3);
    // Timers now: one for the deadlines of the three `held` calls (a @Timeout's calls share one), the one of `slow`, the retry's sleep.

    const started = Date.now();
    await t.close();
    expect(Date.now() - started).toBeLessThan(2_000);

    const responses = await Promise.all([running, ...waiters, slow, retrying]);
    for (const response of responses) {
      expect(response.status).toBe(503);
      expect(response.body).toEqual(unavailable);
    }
    expect(retryAttempts).toBe(1);
    expect(clock.pendingTimers).toBe(0);
    expect(bulkhead.stats()).toMatchObject({ queued: 0 });
    held.open(); // the handler that still holds the permit finishes its work
  });

  it('a call arriving during shutdown is refused at once', async () => {
    const clock = new FakeClock();
    const t = await createApp(platform, { imports: [ResilienceModule.forRoot({ clock })], controllers: [ShutdownController] });
    const service = t.app.get(ResilienceService);
    service.beforeApplicationShutdown();
    const response = await request(t.server).get('/shutdown/retrying').expect(503);
    expect(response.body).toEqual(unavailable);
    expect(clock.pendingTimers).toBe(0);
    await t.close();
  });
});
