// The module's configuration paths (forRoot, forRootAsync with useFactory + inject and with
// useClass, isGlobal), the registries (breakers, bulkheads, rate limiters, named policies and
// their run-time update), and the errorMapping option, through real applications.
import { Controller, Get, HttpException, Injectable, Module, Query } from '@nestjs/common';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Bulkhead,
  BulkheadRegistry,
  CircuitBreaker,
  CircuitBreakerRegistry,
  FakeClock,
  InvalidOptionError,
  RateLimit,
  RateLimiterRegistry,
  ResilienceModule,
  ResilienceRegistry,
  isCircuitOpenError,
  isRateLimitExceededError,
  type CircuitStateChangeEvent,
  type ResilienceModuleOptions,
} from 'nest-resilience';
import { createApp, gate, PLATFORMS, statuses, until, type TestApp } from './support/app.js';

/** A ConfigService look-alike. */
@Injectable()
class ConfigService {
  private readonly values: Record<string, number> = { API_LIMIT: 2 };
  get(key: string): number {
    return this.values[key]!;
  }
}

@Module({ providers: [ConfigService], exports: [ConfigService] })
class ConfigModule {}

let failing = true;
let bulkheadGate = gate();
let bulkheadEntered = 0;

@Controller('api')
class ApiController {
  @Get('limited')
  @RateLimit('api')
  limited() {
    return { ok: true };
  }

  @Get('user-limited')
  @RateLimit({ limit: 1, window: '1m', key: 'user' })
  userLimited() {
    return { ok: true };
  }

  @Get('dependency')
  @CircuitBreaker('dependency')
  dependency() {
    if (failing) throw new Error('dependency down');
    return { ok: true };
  }

  @Get('inline-breaker')
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
  inlineBreaker(@Query('fail') fail?: string) {
    if (fail !== undefined) throw new Error('inline down');
    return { ok: true };
  }

  @Get('bulkhead')
  @Bulkhead('pool')
  async bulkhead() {
    bulkheadEntered++;
    await bulkheadGate.promise;
    return { ok: true };
  }
}

function options(clock: FakeClock, apiLimit: number): ResilienceModuleOptions {
  return {
    clock,
    policies: {
      api: { rateLimit: { limit: apiLimit, window: '1m', algorithm: 'fixed-window' } },
      dependency: { circuitBreaker: { consecutiveFailures: 1, openDuration: '1m' } },
      pool: { bulkhead: { maxConcurrent: 1, maxQueue: 1 } },
    },
  };
}

@Injectable()
class ResilienceConfig {
  constructor(private readonly config: ConfigService) {}
  static clock = new FakeClock();
  create(): ResilienceModuleOptions {
    return options(ResilienceConfig.clock, this.config.get('API_LIMIT'));
  }
}

/** A feature module that does not import the ResilienceModule: it relies on isGlobal. */
@Module({ controllers: [ApiController] })
class FeatureModule {}

const ways = [
  ['forRoot', (clock: FakeClock) => ({ imports: [ResilienceModule.forRoot(options(clock, 2))], controllers: [ApiController] })],
  [
    'forRootAsync with useFactory and inject',
    (clock: FakeClock) => ({
      imports: [
        ResilienceModule.forRootAsync({
          imports: [ConfigModule],
          inject: [ConfigService],
          useFactory: (config: ConfigService) => options(clock, config.get('API_LIMIT')),
        }),
      ],
      controllers: [ApiController],
    }),
  ],
  [
    'forRootAsync with useClass',
    (clock: FakeClock) => {
      ResilienceConfig.clock = clock;
      return { imports: [ResilienceModule.forRootAsync({ imports: [ConfigModule], useClass: ResilienceConfig })], controllers: [ApiController] };
    },
  ],
  ['forRoot with isGlobal', (clock: FakeClock) => ({ imports: [ResilienceModule.forRoot({ ...options(clock, 2), isGlobal: true }), FeatureModule] })],
] as const;

describe.each(PLATFORMS)('module configuration over %s', (platform) => {
  it.each(ways)('%s', async (_way, metadata) => {
    const clock = new FakeClock();
    const t = await createApp(platform, metadata(clock));
    try {
      failing = true;
      // The policies (the limit of 2 read from the config) and the breaker are in place.
      expect(await statuses(t.server, ['/api/limited', '/api/limited', '/api/limited', '/api/dependency', '/api/dependency'])).toEqual([200, 200, 429, 500, 503]);
      expect(t.app.get(ResilienceRegistry).get('api').rateLimit).toMatchObject({ limit: 2 });
    } finally {
      await t.close();
    }
  });
});

describe.each(PLATFORMS)('registries over %s', (platform) => {
  let clock: FakeClock;
  let t: TestApp;
  beforeAll(async () => {
    clock = new FakeClock();
    t = await createApp(platform, { imports: [ResilienceModule.forRoot(options(clock, 1))], controllers: [ApiController] });
  });
  afterAll(() => t.close());

  it('CircuitBreakerRegistry: list, onStateChange, forceOpen, disable, reset', async () => {
    const registry = t.app.get(CircuitBreakerRegistry);
    expect(registry.list().map((entry) => entry.name).toSorted()).toEqual(['ApiController.inlineBreaker', 'dependency']);
    expect(registry.list().every((entry) => entry.state === 'CLOSED')).toBe(true);
    const events: CircuitStateChangeEvent[] = [];
    const subscription = registry.onStateChange((event) => events.push(event));

    await request(t.server).get('/api/inline-breaker?fail=1').expect(500);
    expect(events).toEqual([expect.objectContaining({ breaker: 'ApiController.inlineBreaker', to: 'OPEN' })]);
    await request(t.server).get('/api/inline-breaker').expect(503);

    registry.reset('ApiController.inlineBreaker');
    await request(t.server).get('/api/inline-breaker').expect(200);
    registry.forceOpen('ApiController.inlineBreaker');
    expect(registry.get('ApiController.inlineBreaker').stats().state).toBe('FORCED_OPEN');
    await request(t.server).get('/api/inline-breaker').expect(503);

    registry.disable('ApiController.inlineBreaker');
    for (let index = 0; index < 3; index++) await request(t.server).get('/api/inline-breaker?fail=1').expect(500);
    expect(registry.get('ApiController.inlineBreaker').stats().state).toBe('DISABLED');
    registry.reset('ApiController.inlineBreaker');
    expect(events.map((event) => event.to)).toEqual(['OPEN', 'CLOSED', 'FORCED_OPEN', 'DISABLED', 'CLOSED']);
    subscription.dispose();
    expect(() => registry.get('nope')).toThrow(/No circuit breaker named "nope".*known: /);
  });

  it('BulkheadRegistry: live stats of a named bulkhead', async () => {
    const registry = t.app.get(BulkheadRegistry);
    bulkheadGate = gate();
    bulkheadEntered = 0;
    const running = request(t.server).get('/api/bulkhead').then((response) => response);
    await until(() => bulkheadEntered === 1);
    const queued = request(t.server).get('/api/bulkhead').then((response) => response);
    await until(() => registry.get('pool').stats().queued === 1);
    await request(t.server).get('/api/bulkhead').expect(503);
    expect(registry.list()).toEqual([{ name: 'pool', active: 1, queued: 1, rejected: 1, timedOut: 0, aborted: 0 }]);
    bulkheadGate.open();
    expect((await running).status).toBe(200);
    expect((await queued).status).toBe(200);
    expect(registry.get('pool').stats()).toMatchObject({ active: 0, queued: 0 });
  });

  it('RateLimiterRegistry: list, and reset one client key so its next request passes', async () => {
    const registry = t.app.get(RateLimiterRegistry);
    const names = registry.list().map((entry) => entry.name);
    expect(names).toEqual(expect.arrayContaining(['ApiController.limited', 'ApiController.userLimited']));
    expect(registry.get('ApiController.limited').describe().limits).toEqual([{ name: 'api', limit: 1, windowMs: 60_000, algorithm: 'fixed-window' }]);

    await request(t.server).get('/api/user-limited').expect(200);
    await request(t.server).get('/api/user-limited').expect(429);
    // No user: the key falls back to the client address, as the platform reports it.
    await registry.reset('ApiController.userLimited', '::ffff:127.0.0.1');
    await request(t.server).get('/api/user-limited').expect(200);
    await request(t.server).get('/api/user-limited').expect(429);
    await registry.reset('ApiController.userLimited', '127.0.0.1');
    await request(t.server).get('/api/user-limited').expect(200);
    expect(registry.get('ApiController.userLimited').describe()).toMatchObject({ admitted: 3, rejected: 2 });
  });

  it('ResilienceRegistry.update: a higher rate limit applies from the next request, no restart', async () => {
    const registry = t.app.get(ResilienceRegistry);
    await request(t.server).get('/api/limited').expect(200);
    await request(t.server).get('/api/limited').expect(429);
    registry.update('api', { rateLimit: { limit: 3 } });
    expect(registry.get('api').rateLimit).toEqual({ limit: 3, window: '1m', algorithm: 'fixed-window' });
    const response = await request(t.server).get('/api/limited').expect(200);
    expect(response.headers['ratelimit-policy']).toBe('"api";q=3;w=60');
    await request(t.server).get('/api/limited').expect(200);
    await request(t.server).get('/api/limited').expect(429);
  });

  it('ResilienceRegistry.update: a changed breaker applies from the next call', async () => {
    const registry = t.app.get(ResilienceRegistry);
    failing = true;
    await request(t.server).get('/api/dependency').expect(500);
    await request(t.server).get('/api/dependency').expect(503);
    registry.update('dependency', { circuitBreaker: { consecutiveFailures: 3 } });
    expect(t.app.get(CircuitBreakerRegistry).get('dependency').options.consecutiveFailures).toBe(3);
    for (let index = 0; index < 3; index++) await request(t.server).get('/api/dependency').expect(500);
    await request(t.server).get('/api/dependency').expect(503);
  });

  it('ResilienceRegistry.update: an invalid update throws InvalidOptionError naming the option and changes nothing', async () => {
    const registry = t.app.get(ResilienceRegistry);
    const before = registry.get('api');
    const breaker = t.app.get(CircuitBreakerRegistry).get('dependency');
    let error: unknown;
    try {
      registry.update('api', { rateLimit: { limit: -5 } });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).option).toBe('rateLimit.limit');
    expect((error as Error).message).toMatch(/ResilienceRegistry\.update\("api"\).*"rateLimit\.limit".*-5/);
    expect(() => registry.update('dependency', { circuitBreaker: { failureRateTreshold: 20 } as never })).toThrow(/circuitBreaker\.failureRateTreshold/);
    expect(() => registry.update('missing', {})).toThrow(/No policy named "missing"/);
    expect(registry.get('api')).toBe(before);
    expect(t.app.get(CircuitBreakerRegistry).get('dependency')).toBe(breaker);
    // Still the limit of 3 from the previous update: two used already, one refused.
    await request(t.server).get('/api/limited').expect(429);
  });
});

describe.each(PLATFORMS)('errorMapping over %s', (platform) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createApp(platform, {
      imports: [
        ResilienceModule.forRoot({
          ...options(new FakeClock(), 1),
          errorMapping: (error) => {
            if (isRateLimitExceededError(error)) return new HttpException({ code: 'SLOW_DOWN', wait: Math.ceil(error.retryAfterMs! / 1000) }, 420);
            if (isCircuitOpenError(error)) return new HttpException({ code: 'DEPENDENCY_DOWN' }, 502);
            return error;
          },
        }),
      ],
      controllers: [ApiController],
    });
  });
  afterAll(() => t.close());

  it('replaces the default mapping, for the guard and for the interceptor', async () => {
    await request(t.server).get('/api/limited').expect(200);
    const limited = await request(t.server).get('/api/limited').expect(420);
    expect(limited.body).toEqual({ code: 'SLOW_DOWN', wait: 60 });
    failing = true;
    const failed = await request(t.server).get('/api/dependency').expect(500);
    expect(failed.body).toEqual({ statusCode: 500, message: 'Internal server error' });
    const open = await request(t.server).get('/api/dependency').expect(502);
    expect(open.body).toEqual({ code: 'DEPENDENCY_DOWN' });
  });
});
