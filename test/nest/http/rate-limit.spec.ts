// @RateLimit through real applications on Express and Fastify: status, Retry-After, headers,
// several limits, tiers, cost, skipSuccessful, shadow mode, keys, @SkipRateLimit, globalRateLimit.
import {
  Body,
  Controller,
  Get,
  Injectable,
  Module,
  Post,
  Query,
  UnauthorizedException,
  UseGuards,
  type CanActivate,
  type ExecutionContext,
  type MiddlewareConsumer,
  type NestModule,
} from '@nestjs/common';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock, RateLimit, RateLimiterRegistry, ResilienceModule, SkipRateLimit, type RateLimitHeaders } from 'nest-resilience';
import { createApp, parseRateLimit, parseRateLimitPolicy, PLATFORMS, settle, statuses, type TestApp } from './support/app.js';

interface Req {
  headers: Record<string, string | undefined>;
  user?: { id: string; plan?: string };
}
const requestOf = (context: ExecutionContext): Req => context.switchToHttp().getRequest<Req>();

/** Sets `request.user` from `x-user` / `x-plan`, the way an authentication guard does. */
@Injectable()
class FakeAuthGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = requestOf(context);
    const id = req.headers['x-user'];
    if (id !== undefined) req.user = { id, plan: req.headers['x-plan'] ?? 'free' };
    return true;
  }
}

@Controller('rl')
@UseGuards(FakeAuthGuard)
class RateLimitController {
  @Get('basic')
  @RateLimit({ limit: 2, window: '10s', algorithm: 'fixed-window' })
  basic() {
    return { ok: true };
  }

  @Get('multi')
  @RateLimit([
    { name: 'second', limit: 2, window: '1s', algorithm: 'fixed-window' },
    { name: 'hour', limit: 3, window: '1h', algorithm: 'fixed-window' },
  ])
  multi() {
    return { ok: true };
  }

  // The same, written as two decorators (10/s and 1000/h style).
  @Get('stacked')
  @RateLimit({ limit: 2, window: '1s', algorithm: 'fixed-window' })
  @RateLimit({ limit: 3, window: '1h', algorithm: 'fixed-window' })
  stacked() {
    return { ok: true };
  }

  @Get('tiers')
  @RateLimit({ key: 'user', window: '1m', algorithm: 'fixed-window', limit: (context: ExecutionContext) => (requestOf(context).user?.plan === 'pro' ? 3 : 1) })
  tiers() {
    return { ok: true };
  }

  @Get('cost')
  @RateLimit({ limit: 5, window: '1m', algorithm: 'fixed-window', cost: (context: ExecutionContext) => Number(context.switchToHttp().getRequest<{ query: { units?: string } }>().query.units ?? 1) })
  cost(@Query('units') units: string) {
    return { units };
  }

  @Post('login')
  @RateLimit({ limit: 2, window: '1m', algorithm: 'fixed-window', skipSuccessful: true })
  login(@Body() body: { password?: string }) {
    if (body.password !== 'secret') throw new UnauthorizedException('bad password');
    return { token: 't' };
  }

  @Get('shadow')
  @RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window', mode: 'shadow' })
  shadow() {
    return { ok: true };
  }

  @Get('key-ip')
  @RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window', key: 'ip' })
  keyIp() {
    return { ok: true };
  }

  @Get('key-user')
  @RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window', key: 'user' })
  keyUser() {
    return { ok: true };
  }

  @Get('key-route')
  @RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window', key: 'route' })
  keyRoute() {
    return { ok: true };
  }

  @Get('key-global')
  @RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window', key: 'global' })
  keyGlobal() {
    return { ok: true };
  }

  @Get('key-fn')
  @RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window', key: (context: ExecutionContext) => requestOf(context).headers['x-api-key'] })
  keyFn() {
    return { ok: true };
  }
}

@Controller('rl-class')
@RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window' })
class ClassLimitedController {
  @Get('limited')
  limited() {
    return { ok: true };
  }

  @Get('skipped')
  @SkipRateLimit()
  skipped() {
    return { ok: true };
  }
}

@Controller('shared-policy')
class SharedPolicyController {
  @Get('a')
  @RateLimit('everyone')
  a() {
    return { ok: true };
  }

  @Get('b')
  @RateLimit('everyone')
  b() {
    return { ok: true };
  }
}

@Controller('plain')
class PlainController {
  @Get('one')
  one() {
    return { ok: true };
  }

  @Get('two')
  two() {
    return { ok: true };
  }

  @Get('skipped')
  @SkipRateLimit()
  skipped() {
    return { ok: true };
  }

  @Get('own')
  @RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window' })
  own() {
    return { ok: true };
  }
}

@Controller('rl-mw')
class MiddlewareUserController {
  @Get('user')
  @RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window', key: 'user' })
  user() {
    return { ok: true };
  }
}

/** Sets `request.user` in a Nest middleware (on Fastify, middleware get the raw Node request). */
@Module({ controllers: [MiddlewareUserController] })
class MiddlewareUserModule implements NestModule {
  configure(consumer: MiddlewareConsumer) {
    consumer
      .apply((req: Req, _res: unknown, next: () => void) => {
        const id = req.headers['x-user'];
        if (id !== undefined) req.user = { id };
        next();
      })
      .forRoutes(MiddlewareUserController);
  }
}

const as = (path: string, headers: Record<string, string> = {}): [string, Record<string, string>] => [path, headers];

/** The rate-limit headers of a response (and only those). */
const pick = (received: Record<string, string>) =>
  Object.fromEntries(['ratelimit', 'ratelimit-policy', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'].filter((name) => name in received).map((name) => [name, received[name]]));

const nestErrorBody = (status: number, error: string) => ({ statusCode: status, error, message: expect.any(String) });

describe.each(PLATFORMS)('@RateLimit over %s', (platform) => {
  let clock: FakeClock;
  let t: TestApp;

  beforeAll(async () => {
    clock = new FakeClock();
    t = await createApp(platform, {
      imports: [
        ResilienceModule.forRoot({
          isGlobal: true,
          clock,
          policies: { everyone: { rateLimit: { limit: 2, window: '1m', algorithm: 'fixed-window', key: 'global' } } },
        }),
        MiddlewareUserModule,
      ],
      controllers: [RateLimitController, ClassLimitedController, SharedPolicyController],
      providers: [FakeAuthGuard],
    });
  });
  afterAll(() => t.close());

  it('answers 429 in Nest error shape with Retry-After = ceil(ms / 1000) and IETF headers on every response', async () => {
    const first = await request(t.server).get('/rl/basic').expect(200);
    expect(parseRateLimitPolicy(first.headers['ratelimit-policy'])).toEqual({ default: { q: 2, w: 10 } });
    expect(parseRateLimit(first.headers['ratelimit'])).toEqual({ default: { r: 1, t: 10 } });
    expect(first.headers['x-ratelimit-limit']).toBeUndefined();
    expect(first.headers['retry-after']).toBeUndefined();

    const second = await request(t.server).get('/rl/basic').expect(200);
    expect(parseRateLimit(second.headers['ratelimit'])).toEqual({ default: { r: 0, t: 10 } });

    clock.advance(2_500); // 7.5 s left in the window: Retry-After rounds up to 8
    const refused = await request(t.server).get('/rl/basic').expect(429);
    expect(refused.body).toEqual(nestErrorBody(429, 'Too Many Requests'));
    expect(refused.headers['retry-after']).toBe('8');
    expect(parseRateLimit(refused.headers['ratelimit'])).toEqual({ default: { r: 0, t: 8 } });
    expect(parseRateLimitPolicy(refused.headers['ratelimit-policy'])).toEqual({ default: { q: 2, w: 10 } });

    clock.advance(7_499); // 1 ms left: still at least 1 second
    const last = await request(t.server).get('/rl/basic').expect(429);
    expect(last.headers['retry-after']).toBe('1');
    clock.advance(1);
    await request(t.server).get('/rl/basic').expect(200);
  });

  it.each(['multi', 'stacked'])('several limits on one handler (%s) must all pass; a refused request consumes none', async (route) => {
    const start = clock.now();
    // Align to a second boundary so the 1 s window starts fresh.
    clock.advance(1_000 - (start % 1_000));
    await request(t.server).get(`/rl/${route}`).expect(200);
    const second = await request(t.server).get(`/rl/${route}`).expect(200);
    const names = Object.keys(parseRateLimit(second.headers['ratelimit']));
    expect(names).toHaveLength(2);
    const [perSecond, perHour] = names as [string, string];
    expect(parseRateLimit(second.headers['ratelimit'])[perHour]!.r).toBe(1);
    const policy = parseRateLimitPolicy(second.headers['ratelimit-policy']);
    expect(policy[perSecond]).toEqual({ q: 2, w: 1 });
    expect(policy[perHour]).toEqual({ q: 3, w: 3600 });

    // Refused by the per-second limit: the hourly budget is untouched.
    for (let index = 0; index < 3; index++) {
      const refused = await request(t.server).get(`/rl/${route}`).expect(429);
      expect(refused.headers['retry-after']).toBe('1');
    }
    clock.advance(1_000);
    const third = await request(t.server).get(`/rl/${route}`).expect(200);
    expect(parseRateLimit(third.headers['ratelimit'])[perHour]!.r).toBe(0);
    expect(parseRateLimit(third.headers['ratelimit'])[perSecond]!.r).toBe(1);
    // Now the hourly limit refuses, and says so in Retry-After.
    const hourly = await request(t.server).get(`/rl/${route}`).expect(429);
    expect(Number(hourly.headers['retry-after'])).toBeGreaterThan(3_000);
    expect(Number(hourly.headers['retry-after'])).toBeLessThanOrEqual(3_600);
  });

  it('tiers: the limit is a function of the request (pro users get more)', async () => {
    await request(t.server).get('/rl/tiers').set('x-user', 'free-1').expect(200);
    await request(t.server).get('/rl/tiers').set('x-user', 'free-1').expect(429);
    for (let index = 0; index < 3; index++) {
      const allowed = await request(t.server).get('/rl/tiers').set('x-user', 'pro-1').set('x-plan', 'pro').expect(200);
      expect(parseRateLimitPolicy(allowed.headers['ratelimit-policy']).default).toEqual({ q: 3, w: 60 });
    }
    await request(t.server).get('/rl/tiers').set('x-user', 'pro-1').set('x-plan', 'pro').expect(429);
  });

  it('cost: a request may consume several units; a refused one consumes none', async () => {
    const first = await request(t.server).get('/rl/cost?units=3').expect(200);
    expect(parseRateLimit(first.headers['ratelimit']).default!.r).toBe(2);
    await request(t.server).get('/rl/cost?units=3').expect(429);
    const second = await request(t.server).get('/rl/cost?units=2').expect(200);
    expect(parseRateLimit(second.headers['ratelimit']).default!.r).toBe(0);
    await request(t.server).get('/rl/cost?units=1').expect(429);
  });

  it('skipSuccessful: failed logins are counted, successful ones refunded', async () => {
    for (let index = 0; index < 4; index++) {
      await request(t.server).post('/rl/login').send({ password: 'secret' }).expect(201);
      await settle(); // the refund happens when the response has finished
    }
    await request(t.server).post('/rl/login').send({ password: 'wrong' }).expect(401);
    await request(t.server).post('/rl/login').send({ password: 'wrong' }).expect(401);
    await settle();
    const refused = await request(t.server).post('/rl/login').send({ password: 'secret' }).expect(429);
    expect(refused.body).toEqual(nestErrorBody(429, 'Too Many Requests'));
  });

  it("mode: 'shadow' never answers 429 but still counts", async () => {
    for (let index = 0; index < 4; index++) {
      const response = await request(t.server).get('/rl/shadow').expect(200);
      expect(parseRateLimit(response.headers['ratelimit']).default!.r).toBe(0);
    }
    const info = t.app.get(RateLimiterRegistry).list().find((limiter) => limiter.name === 'RateLimitController.shadow');
    expect(info).toMatchObject({ admitted: 1, rejected: 3 });
  });

  it("key 'ip' counts the client address, whoever the user is", async () => {
    expect(await statuses(t.server, [as('/rl/key-ip', { 'x-user': 'a' }), as('/rl/key-ip', { 'x-user': 'b' })])).toEqual([200, 429]);
  });

  it("key 'user' counts request.user (set by a guard), falling back to the IP", async () => {
    const alice = as('/rl/key-user', { 'x-user': 'alice' });
    expect(await statuses(t.server, [alice, alice, as('/rl/key-user', { 'x-user': 'bob' }), '/rl/key-user', '/rl/key-user'])).toEqual([200, 429, 200, 200, 429]);
  });

  it("key 'user' also finds a user set by a Nest middleware", async () => {
    const carol = as('/rl-mw/user', { 'x-user': 'carol' });
    expect(await statuses(t.server, [carol, carol, as('/rl-mw/user', { 'x-user': 'dave' })])).toEqual([200, 429, 200]);
  });

  it("keys 'route' and 'global' give every client one budget", async () => {
    const paths = ['/rl/key-route', '/rl/key-global'];
    for (const path of paths) expect(await statuses(t.server, [as(path, { 'x-user': 'a' }), as(path, { 'x-user': 'b' })])).toEqual([200, 429]);
  });

  it("a named policy with key 'global' is one budget for every handler naming it", async () => {
    expect(await statuses(t.server, ['/shared-policy/a', '/shared-policy/b', '/shared-policy/a', '/shared-policy/b'])).toEqual([200, 200, 429, 429]);
  });

  it('a key function of the context decides who is counted', async () => {
    const k1 = as('/rl/key-fn', { 'x-api-key': 'k1' });
    expect(await statuses(t.server, [k1, k1, as('/rl/key-fn', { 'x-api-key': 'k2' })])).toEqual([200, 429, 200]);
  });

  it('a class-level @RateLimit covers every handler; @SkipRateLimit opts one out', async () => {
    await request(t.server).get('/rl-class/limited').expect(200);
    await request(t.server).get('/rl-class/limited').expect(429);
    for (let index = 0; index < 3; index++) {
      const response = await request(t.server).get('/rl-class/skipped').expect(200);
      expect(response.headers['ratelimit']).toBeUndefined();
    }
  });
});

describe.each(PLATFORMS)('rate-limit headers over %s', (platform) => {
  const cases: Array<[RateLimitHeaders, { ietf: boolean; legacy: boolean }]> = [
    ['ietf', { ietf: true, legacy: false }],
    ['legacy', { ietf: false, legacy: true }],
    ['both', { ietf: true, legacy: true }],
    ['none', { ietf: false, legacy: false }],
  ];
  it.each(cases)("http.headers: '%s'", async (headers, expected) => {
    const clock = new FakeClock();
    const t = await createApp(platform, {
      imports: [ResilienceModule.forRoot({ clock, http: { headers } })],
      controllers: [RateLimitController],
      providers: [FakeAuthGuard],
    });
    try {
      const allowed = await request(t.server).get('/rl/basic').expect(200);
      await request(t.server).get('/rl/basic').expect(200);
      clock.advance(4_000);
      const refused = await request(t.server).get('/rl/basic').expect(429);
      expect(refused.headers['retry-after']).toBe('6'); // always sent on a 429
      const expectedFor = (remaining: number, reset: number) => ({
        ...(expected.ietf ? { ratelimit: `"default";r=${remaining};t=${reset}`, 'ratelimit-policy': '"default";q=2;w=10' } : {}),
        ...(expected.legacy ? { 'x-ratelimit-limit': '2', 'x-ratelimit-remaining': String(remaining), 'x-ratelimit-reset': String(reset) } : {}),
      });
      expect(pick(allowed.headers as Record<string, string>)).toEqual(expectedFor(1, 10));
      expect(pick(refused.headers as Record<string, string>)).toEqual(expectedFor(0, 6));
    } finally {
      await t.close();
    }
  });
});

describe.each(PLATFORMS)('module globalRateLimit over %s', (platform) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createApp(platform, {
      imports: [ResilienceModule.forRoot({ clock: new FakeClock(), globalRateLimit: { limit: 3, window: '1m', algorithm: 'fixed-window' } })],
      controllers: [PlainController],
    });
  });
  afterAll(() => t.close());

  it('limits every route with one budget per client; @SkipRateLimit opts out; a route limit still applies', async () => {
    await request(t.server).get('/plain/own').expect(200);
    // The route's own limit (1) refuses although the global one (3) has room left.
    await request(t.server).get('/plain/own').expect(429);
    await request(t.server).get('/plain/one').expect(200);
    const refused = await request(t.server).get('/plain/two').expect(429);
    expect(refused.body).toEqual(nestErrorBody(429, 'Too Many Requests'));
    expect(refused.headers['retry-after']).toBe('60');
    expect(parseRateLimitPolicy(refused.headers['ratelimit-policy'])).toEqual({ default: { q: 3, w: 60 } });
    await request(t.server).get('/plain/one').expect(429);
    for (let index = 0; index < 5; index++) await request(t.server).get('/plain/skipped').expect(200);
    expect(t.app.get(RateLimiterRegistry).list().map((limiter) => limiter.name)).toContain('global');
  });
});
