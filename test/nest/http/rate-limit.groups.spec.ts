// Limits of one handler that count different keys (one group per key): decided in turn, all or
// nothing, their headers written together, a refusal answered for the group that refused.
import { Controller, Get, type ExecutionContext } from '@nestjs/common';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock, RateLimit, ResilienceModule } from 'nest-resilience';
import { createApp, parseRateLimit, parseRateLimitPolicy, PLATFORMS, type TestApp } from './support/app.js';

const clientOf = (context: ExecutionContext): string | undefined => context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers['x-client'];

@Controller('groups')
class GroupsController {
  @Get('two')
  @RateLimit([
    { name: 'client', limit: 2, window: '1m', algorithm: 'fixed-window', key: clientOf },
    { name: 'everyone', limit: 3, window: '5s', algorithm: 'fixed-window', key: 'global' },
  ])
  two() {
    return { ok: true };
  }
}

const from = (client: string) => ({ 'x-client': client });

describe.each(PLATFORMS)('limits counting different keys on one handler over %s', (platform) => {
  let clock: FakeClock;
  let t: TestApp;

  beforeAll(async () => {
    clock = new FakeClock(0);
    t = await createApp(platform, {
      imports: [ResilienceModule.forRoot({ clock, http: { headers: 'both' } })],
      controllers: [GroupsController],
    });
  });
  afterAll(() => t.close());

  it('write every group in the headers, refund a group that passed when a later one refuses, and leave later groups alone when an earlier one refuses', async () => {
    const server = t.server;
    const first = await request(server).get('/groups/two').set(from('a')).expect(200);
    expect(parseRateLimit(first.headers['ratelimit'])).toEqual({ client: { r: 1, t: 60 }, everyone: { r: 2, t: 5 } });
    expect(parseRateLimitPolicy(first.headers['ratelimit-policy'])).toEqual({ client: { q: 2, w: 60 }, everyone: { q: 3, w: 5 } });
    // The legacy headers describe the tightest limit across the groups.
    expect([first.headers['x-ratelimit-limit'], first.headers['x-ratelimit-remaining'], first.headers['x-ratelimit-reset']]).toEqual(['2', '1', '60']);
    expect(first.headers['retry-after']).toBeUndefined();

    await request(server).get('/groups/two').set(from('a')).expect(200);
    const third = await request(server).get('/groups/two').set(from('b')).expect(200);
    expect([third.headers['x-ratelimit-limit'], third.headers['x-ratelimit-remaining'], third.headers['x-ratelimit-reset']]).toEqual(['3', '0', '5']);

    // Client c passes its own limit, then everyone's refuses: 429 with everyone's Retry-After, and
    // c's unit is given back.
    const refusedByEveryone = await request(server).get('/groups/two').set(from('c')).expect(429);
    expect(refusedByEveryone.headers['retry-after']).toBe('5');
    expect(parseRateLimit(refusedByEveryone.headers['ratelimit']).everyone).toEqual({ r: 0, t: 5 });

    clock.advance(5_000);
    const afterRefund = await request(server).get('/groups/two').set(from('c')).expect(200);
    expect(parseRateLimit(afterRefund.headers['ratelimit'])).toEqual({ client: { r: 1, t: 55 }, everyone: { r: 2, t: 5 } });
    await request(server).get('/groups/two').set(from('c')).expect(200);

    // Now c's own limit refuses first: everyone's is not asked, so it is not charged.
    const refusedByClient = await request(server).get('/groups/two').set(from('c')).expect(429);
    expect(refusedByClient.headers['retry-after']).toBe('55');
    expect(parseRateLimit(refusedByClient.headers['ratelimit'])).toEqual({ client: { r: 0, t: 55 } });
    expect(parseRateLimitPolicy(refusedByClient.headers['ratelimit-policy'])).toEqual({ client: { q: 2, w: 60 } });
    const next = await request(server).get('/groups/two').set(from('d')).expect(200);
    expect(parseRateLimit(next.headers['ratelimit']).everyone).toEqual({ r: 0, t: 5 });
  });
});
