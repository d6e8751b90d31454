// Where decorators go and what they attach: class and method level (method wins), exactly one
// interceptor and at most one guard of ours per handler (read from Nest's own metadata and
// counted at run time), nothing on undecorated routes; named instances shared, inline ones not.
import { GUARDS_METADATA as NEST_GUARDS_METADATA, INTERCEPTORS_METADATA as NEST_INTERCEPTORS_METADATA } from '@nestjs/common/constants.js';
import { Controller, Get, Injectable, UseGuards, UseInterceptors, type CallHandler, type CanActivate, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  Bulkhead,
  BulkheadRegistry,
  CircuitBreaker,
  CircuitBreakerRegistry,
  FakeClock,
  Fallback,
  RateLimit,
  RateLimitGuard,
  ResilienceInterceptor,
  ResilienceModule,
  Retry,
  TimeLimit,
  Timeout,
  UseResilience,
} from 'nest-resilience';
import { GUARDS_METADATA, INTERCEPTORS_METADATA } from '../../../lib/nest/resilience.constants.js';
import { createApp, driveClock, gate, PLATFORMS, until, type TestApp } from './support/app.js';

@Injectable()
class UserGuard implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

@Injectable()
class UserInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle();
  }
}

let attempts = 0;

@Controller('placed')
@CircuitBreaker({ consecutiveFailures: 7, openDuration: '1m' })
@RateLimit({ limit: 100, window: '1m' })
@Retry({ maxAttempts: 5, delay: 1, jitter: 'none' })
@Timeout('10s')
@UseGuards(UserGuard)
class PlacedController {
  // Every decorator again at method level, some twice: still one guard and one interceptor.
  @Get('everything')
  @UseInterceptors(UserInterceptor)
  @RateLimit({ limit: 50, window: '1m' })
  @RateLimit({ limit: 500, window: '1h' })
  @CircuitBreaker({ consecutiveFailures: 3 })
  @Retry({ maxAttempts: 1 })
  @TimeLimit('5s')
  @Timeout('5s')
  @Bulkhead({ maxConcurrent: 2 })
  @Fallback({ value: 'fallback' })
  @UseResilience('policy')
  everything() {
    return { ok: true };
  }

  // Only the class's decorators.
  @Get('inherited')
  inherited() {
    attempts++;
    throw new Error('fails');
  }

  // Method options win over the class's: one attempt, not five.
  @Get('overridden')
  @Retry({ maxAttempts: 1 })
  overridden() {
    attempts++;
    throw new Error('fails');
  }
}

@Controller('mixed')
class MixedController {
  @Get('limited')
  @RateLimit({ limit: 10, window: '1m' })
  limited() {
    return { ok: true };
  }

  @Get('plain')
  plain() {
    return { ok: true };
  }
}

class BaseController {
  @Get('base')
  base() {
    return { ok: true };
  }
}

// Handlers inherited from a base class are covered by the subclass's class-level decorators.
@Controller('child')
@RateLimit({ limit: 1, window: '1m' })
class ChildController extends BaseController {}

@Controller('child2')
@RateLimit({ limit: 2, window: '1m' })
class OtherChildController extends BaseController {}

let sharedGate = gate();
let sharedEntered = 0;

@Controller('shared')
class SharedController {
  @Get('a')
  @CircuitBreaker('downstream')
  @Bulkhead('downstream')
  async a() {
    sharedEntered++;
    await sharedGate.promise;
    throw new Error('downstream failed');
  }

  @Get('b')
  @CircuitBreaker('downstream')
  @Bulkhead('downstream')
  b() {
    return { ok: true };
  }

  @Get('c')
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
  c() {
    throw new Error('c fails');
  }

  @Get('d')
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
  d() {
    return { ok: true };
  }
}

const ours = (handler: Function, key: string, enhancer: Function): number =>
  ((Reflect.getMetadata(key, handler) as unknown[] | undefined) ?? []).filter((entry) => entry === enhancer).length;

describe('enhancer metadata', () => {
  it("uses Nest's own metadata keys", () => {
    expect(GUARDS_METADATA).toBe(NEST_GUARDS_METADATA);
    expect(INTERCEPTORS_METADATA).toBe(NEST_INTERCEPTORS_METADATA);
  });

  it('puts exactly one interceptor and one guard of ours on a handler, however many decorators', () => {
    for (const name of ['everything', 'inherited', 'overridden'] as const) {
      const handler = PlacedController.prototype[name];
      expect({ name, guards: ours(handler, NEST_GUARDS_METADATA, RateLimitGuard) }).toEqual({ name, guards: 1 });
      expect({ name, interceptors: ours(handler, NEST_INTERCEPTORS_METADATA, ResilienceInterceptor) }).toEqual({ name, interceptors: 1 });
    }
    // Nothing of ours at class level (Nest would run a class copy and a method copy).
    expect(ours(PlacedController, NEST_GUARDS_METADATA, RateLimitGuard)).toBe(0);
    expect(ours(PlacedController, NEST_INTERCEPTORS_METADATA, ResilienceInterceptor)).toBe(0);
    // The user's own enhancers are kept.
    expect(Reflect.getMetadata(NEST_GUARDS_METADATA, PlacedController)).toEqual([UserGuard]);
    expect(Reflect.getMetadata(NEST_INTERCEPTORS_METADATA, PlacedController.prototype.everything)).toContain(UserInterceptor);
  });

  it('a rate limit alone needs no interceptor; an undecorated route gets nothing', () => {
    expect(ours(MixedController.prototype.limited, NEST_GUARDS_METADATA, RateLimitGuard)).toBe(1);
    expect(Reflect.getMetadata(NEST_INTERCEPTORS_METADATA, MixedController.prototype.limited)).toBeUndefined();
    expect(Reflect.getMetadata(NEST_GUARDS_METADATA, MixedController.prototype.plain)).toBeUndefined();
    expect(Reflect.getMetadata(NEST_INTERCEPTORS_METADATA, MixedController.prototype.plain)).toBeUndefined();
    // A pattern without a rate limit needs no guard.
    expect(Reflect.getMetadata(NEST_GUARDS_METADATA, SharedController.prototype.c)).toBeUndefined();
    expect(ours(SharedController.prototype.c, NEST_INTERCEPTORS_METADATA, ResilienceInterceptor)).toBe(1);
  });
});

describe.each(PLATFORMS)('placement at run time over %s', (platform) => {
  let t: TestApp;
  let clock: FakeClock;
  const guardRuns = vi.spyOn(RateLimitGuard.prototype, 'canActivate');
  const interceptorRuns = vi.spyOn(ResilienceInterceptor.prototype, 'intercept');

  beforeAll(async () => {
    clock = new FakeClock();
    t = await createApp(platform, {
      imports: [
        ResilienceModule.forRoot({
          clock,
          policies: {
            policy: { circuitBreaker: { consecutiveFailures: 10 } },
            downstream: { circuitBreaker: { consecutiveFailures: 1, openDuration: '1m' }, bulkhead: { maxConcurrent: 1, maxQueue: 0 } },
          },
        }),
      ],
      controllers: [PlacedController, MixedController, SharedController, ChildController, OtherChildController],
      providers: [UserGuard, UserInterceptor],
    });
  });
  afterAll(() => t.close());
  afterEach(() => {
    guardRuns.mockClear();
    interceptorRuns.mockClear();
  });

  it('runs our guard and our interceptor once per request', async () => {
    const response = await request(t.server).get('/placed/everything').expect(200);
    expect(guardRuns).toHaveBeenCalledTimes(1);
    expect(interceptorRuns).toHaveBeenCalledTimes(1);
    // The method's two limits, not the class's.
    const policy = response.headers['ratelimit-policy'] as string;
    expect(policy).toContain('q=50');
    expect(policy).toContain('q=500');
    expect(policy).not.toContain('q=100');
  });

  it('runs neither on an undecorated route, only the guard on a rate-limited one', async () => {
    const plain = await request(t.server).get('/mixed/plain').expect(200);
    expect(plain.headers['ratelimit']).toBeUndefined();
    expect(guardRuns).not.toHaveBeenCalled();
    expect(interceptorRuns).not.toHaveBeenCalled();
    await request(t.server).get('/mixed/limited').expect(200);
    expect(guardRuns).toHaveBeenCalledTimes(1);
    expect(interceptorRuns).not.toHaveBeenCalled();
  });

  it('class-level decorators apply to every handler; method-level ones win', async () => {
    attempts = 0;
    const drive = async (path: string, status: number) => {
      const response = await driveClock(clock, request(t.server).get(path), 5);
      expect(response.status).toBe(status);
      return response;
    };
    const inherited = await drive('/placed/inherited', 500);
    expect(attempts).toBe(5); // the class's @Retry
    expect(inherited.headers['ratelimit-policy']).toContain('q=100'); // the class's @RateLimit
    attempts = 0;
    await drive('/placed/overridden', 500);
    expect(attempts).toBe(1); // the method's @Retry
    // Each handler has its own breaker built from the options that apply to it.
    const registry = t.app.get(CircuitBreakerRegistry);
    expect(registry.get('PlacedController.inherited').options.consecutiveFailures).toBe(7);
    expect(registry.get('PlacedController.inherited').stats().consecutiveFailures).toBe(5);
    expect(registry.get('PlacedController.overridden').stats().consecutiveFailures).toBe(1);
    expect(registry.get('PlacedController.everything').options.consecutiveFailures).toBe(3);
  });

  it('class-level decorators cover handlers inherited from a base controller', async () => {
    await request(t.server).get('/child/base').expect(200);
    await request(t.server).get('/child/base').expect(429);
    // Another subclass sharing the same handler function has its own plan and its own limit.
    await request(t.server).get('/child2/base').expect(200);
    await request(t.server).get('/child2/base').expect(200);
    await request(t.server).get('/child2/base').expect(429);
    expect(guardRuns).toHaveBeenCalledTimes(5);
  });

  it('a named breaker and bulkhead are one instance shared by every method naming them', async () => {
    const breakers = t.app.get(CircuitBreakerRegistry);
    const bulkheads = t.app.get(BulkheadRegistry);
    expect(breakers.list().filter((entry) => entry.name === 'downstream')).toHaveLength(1);
    expect(breakers.has('SharedController.a')).toBe(false);
    expect(breakers.has('SharedController.b')).toBe(false);
    expect(bulkheads.has('SharedController.a')).toBe(false);

    sharedGate = gate();
    sharedEntered = 0;
    const holding = request(t.server).get('/shared/a').then((response) => response);
    await until(() => sharedEntered === 1);
    // `a` holds the only permit of the shared bulkhead: `b` is refused.
    await request(t.server).get('/shared/b').expect(503);
    expect(bulkheads.get('downstream').stats()).toMatchObject({ active: 1, rejected: 1 });
    sharedGate.open();
    expect((await holding).status).toBe(500);
    // `a` failed once: the shared breaker is open for `b` too.
    await request(t.server).get('/shared/b').expect(503);
    expect(breakers.get('downstream').stats().state).toBe('OPEN');
  });

  it('inline options create one instance per class and method', async () => {
    const breakers = t.app.get(CircuitBreakerRegistry);
    expect(breakers.has('SharedController.c')).toBe(true);
    expect(breakers.has('SharedController.d')).toBe(true);
    await request(t.server).get('/shared/c').expect(500);
    await request(t.server).get('/shared/c').expect(503);
    await request(t.server).get('/shared/d').expect(200);
    expect(breakers.get('SharedController.c').stats().state).toBe('OPEN');
    expect(breakers.get('SharedController.d').stats().state).toBe('CLOSED');
  });
});
