import { Controller, Get, Injectable } from '@nestjs/common';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { Bulkhead, CircuitBreaker, Fallback, RateLimit, ResilienceEvents, ResilienceModule, Retry, Timeout } from 'nest-resilience';
import { createApp, PLATFORMS, type TestApp } from './support/app.js';

const open: TestApp[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((app) => app.close()));
});

@Injectable()
class Flaky {
  attempts = 0;
  @Retry({ maxAttempts: 2, delay: 1, jitter: 'none' })
  @Fallback({ value: 'cached' })
  async fetch(): Promise<string> {
    this.attempts++;
    throw new Error('flaky');
  }
}

@Controller('events')
class EventsController {
  constructor(private readonly flaky: Flaky) {}

  @Get('limited')
  @RateLimit({ limit: 1, window: '1m' })
  limited(): string {
    return 'ok';
  }

  @Get('breaker')
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
  @Bulkhead({ maxConcurrent: 1 })
  @Timeout('1s')
  breaker(): never {
    throw new Error('down');
  }

  @Get('provider')
  provider(): Promise<string> {
    return this.flaky.fetch();
  }
}

describe.each(PLATFORMS)('ResilienceEvents (%s)', (platform) => {
  it('gathers the events of every policy the module built, labelled', async () => {
    const app = await createApp(platform, { imports: [ResilienceModule.forRoot()], controllers: [EventsController], providers: [Flaky] });
    open.push(app);
    const events = app.app.get(ResilienceEvents);
    const seen: string[] = [];
    const subscriptions = [
      events.onRateLimitDecision((event) => seen.push(`rate-limit ${event.limiter} ${event.decision.allowed ? 'allowed' : 'refused'}`)),
      events.onCircuitCall((event) => seen.push(`call ${event.breaker} ${event.outcome}`)),
      events.onCircuitStateChange((event) => seen.push(`state ${event.breaker} ${event.from}→${event.to}`)),
      events.onRetry((event) => seen.push(`retry ${event.policy} attempt ${event.attempt}`)),
      events.onRetryGiveUp((event) => seen.push(`give up ${event.policy} ${event.reason}`)),
      events.onFallback((event) => seen.push(`fallback ${event.policy}`)),
    ];
    await request(app.server).get('/events/limited').expect(200);
    await request(app.server).get('/events/limited').expect(429);
    await request(app.server).get('/events/breaker').expect(500);
    await request(app.server).get('/events/breaker').expect(503);
    const provider = await request(app.server).get('/events/provider').expect(200);
    expect(provider.text).toBe('cached');
    expect(seen).toEqual([
      'rate-limit EventsController.limited allowed',
      'rate-limit EventsController.limited refused',
      'call EventsController.breaker failure',
      'state EventsController.breaker CLOSED→OPEN',
      'call EventsController.breaker rejected',
      'retry Flaky.fetch attempt 1',
      'give up Flaky.fetch exhausted',
      'fallback Flaky.fetch',
    ]);
    for (const subscription of subscriptions) subscription.dispose();
    seen.length = 0;
    await request(app.server).get('/events/breaker').expect(503);
    expect(seen).toEqual([]);
  });
});
