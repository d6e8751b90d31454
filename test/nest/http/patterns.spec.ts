// @CircuitBreaker, @Retry, @Timeout / @TimeLimit, @Bulkhead, @Fallback and @UseResilience through
// real applications on Express and Fastify, with the HTTP mapping of each rejection.
import {
  BadGatewayException,
  BadRequestException,
  Controller,
  Get,
  NotFoundException,
  Post,
  Query,
  type ExecutionContext,
} from '@nestjs/common';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  Bulkhead,
  BulkheadRegistry,
  CircuitBreaker,
  CircuitBreakerRegistry,
  Fallback,
  FakeClock,
  getAbortSignal,
  isTimeoutExceededError,
  ResilienceModule,
  Retry,
  TimeLimit,
  Timeout,
  UseResilience,
} from 'nest-resilience';
import { createApp, driveClock, gate, PLATFORMS, until, type TestApp } from './support/app.js';

const calls: Record<string, number> = {};
const count = (name: string): number => (calls[name] = (calls[name] ?? 0) + 1);
const signals: Record<string, AbortSignal | undefined> = {};
let bulkheadGate = gate();

/** Waits until the call's signal fires; never settles otherwise. */
function waitForAbort(name: string): Promise<never> {
  const signal = getAbortSignal();
  signals[name] = signal;
  return new Promise((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason as Error)));
}

@Controller('cb')
class BreakerController {
  @Get('fail')
  @CircuitBreaker({ consecutiveFailures: 2, openDuration: '30s' })
  fail(@Query('ok') ok?: string) {
    count('cb.fail');
    if (ok === undefined) throw new Error('downstream broke');
    return { ok: true };
  }

  @Get('client-error')
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '30s' })
  clientError() {
    count('cb.client-error');
    throw new NotFoundException('no such thing');
  }

  @Get('forced')
  @CircuitBreaker({ consecutiveFailures: 5 })
  forced() {
    return { ok: true };
  }

  @Get('shadow')
  @CircuitBreaker({ consecutiveFailures: 1, mode: 'shadow' })
  shadow() {
    count('cb.shadow');
    throw new Error('still broken');
  }
}

@Controller('retry')
class RetryController {
  @Get('flaky')
  @Retry({ maxAttempts: 3, delay: 100, jitter: 'none', backoff: 'constant' })
  flaky() {
    if (count('retry.flaky') < 3) throw new Error('transient');
    return { attempt: calls['retry.flaky'] };
  }

  @Post('flaky')
  @Retry({ maxAttempts: 3, delay: 100, jitter: 'none', backoff: 'constant' })
  flakyPost() {
    if (count('retry.flaky-post') < 3) throw new Error('transient');
    return { attempt: calls['retry.flaky-post'] };
  }

  @Post('allowed')
  @Retry({ maxAttempts: 3, delay: 100, jitter: 'none', backoff: 'constant', retryNonIdempotent: true })
  allowed() {
    if (count('retry.allowed') < 3) throw new Error('transient');
    return { attempt: calls['retry.allowed'] };
  }

  @Get('bad-gateway')
  @Retry({ maxAttempts: 3, delay: 100, jitter: 'none', backoff: 'constant' })
  badGateway() {
    count('retry.bad-gateway');
    throw new BadGatewayException('upstream said no');
  }
}

@Controller('timeout')
class TimeoutController {
  @Get('slow')
  @Timeout('1s')
  slow() {
    count('timeout.slow');
    return waitForAbort('timeout.slow');
  }

  @Get('time-limit')
  @TimeLimit(500)
  timeLimit() {
    return waitForAbort('timeout.time-limit');
  }

  @Get('fast')
  @Timeout('1s')
  fast() {
    return { left: getAbortSignal()?.aborted === false };
  }
}

@Controller('bulkhead')
class BulkheadController {
  @Get('one')
  @Bulkhead({ maxConcurrent: 1, maxQueue: 0 })
  async one() {
    count('bulkhead.one');
    await bulkheadGate.promise;
    return { ok: true };
  }
}

@Controller('fallback')
class FallbackController {
  @Get('function')
  @Fallback((error: unknown, context: ExecutionContext) => ({
    fallback: 'function',
    error: (error as Error).message,
    path: context.switchToHttp().getRequest<{ url: string }>().url,
  }))
  fn() {
    throw new Error('primary failed');
  }

  @Get('method')
  @Fallback('cached')
  method() {
    throw new Error('primary failed');
  }

  cached(error: Error) {
    return { fallback: 'method', error: error.message, self: this instanceof FallbackController };
  }

  @Get('value')
  @Fallback({ value: { fallback: 'value' } })
  value() {
    throw new Error('primary failed');
  }

  @Get('filtered')
  @Fallback({ value: { fallback: 'filtered' }, handles: [NotFoundException] })
  filtered(@Query('kind') kind: string) {
    if (kind === 'missing') throw new NotFoundException('gone');
    throw new BadRequestException('bad input');
  }

  // Our own rejections reach the fallback too: an open circuit answers with the fallback.
  @Get('open-circuit')
  @Fallback({ value: { fallback: 'circuit open' } })
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
  openCircuit() {
    count('fallback.open-circuit');
    throw new Error('down');
  }
}

@Controller('policy')
class PolicyController {
  @Get('all')
  @UseResilience('full')
  all() {
    count('policy.all');
    throw new Error('failing');
  }

  @Get('override')
  @UseResilience('full')
  @Retry({ maxAttempts: 1 })
  @Fallback({ value: 'explicit', handles: [BadRequestException] })
  override() {
    count('policy.override');
    return waitForAbort('policy.override');
  }
}

const nestErrorBody = (status: number, error: string) => ({ statusCode: status, error, message: expect.any(String) });

describe.each(PLATFORMS)('resilience patterns over %s', (platform) => {
  let clock: FakeClock;
  let t: TestApp;

  beforeAll(async () => {
    clock = new FakeClock();
    t = await createApp(platform, {
      imports: [
        ResilienceModule.forRoot({
          clock,
          policies: {
            full: {
              rateLimit: { limit: 100, window: '1m' },
              retry: { maxAttempts: 2, delay: 100, jitter: 'none' },
              circuitBreaker: { consecutiveFailures: 50 },
              timeout: '1s',
              bulkhead: { maxConcurrent: 5 },
              fallback: { value: { fallback: 'policy' } },
            },
          },
        }),
      ],
      controllers: [BreakerController, RetryController, TimeoutController, BulkheadController, FallbackController, PolicyController],
    });
  });
  afterAll(() => t.close());
  beforeEach(() => {
    for (const key of Object.keys(calls)) delete calls[key];
  });

  describe('@CircuitBreaker', () => {
    it('opens after failures: 503 with Retry-After, the handler not called; probes after openDuration', async () => {
      await request(t.server).get('/cb/fail').expect(500);
      await request(t.server).get('/cb/fail').expect(500);
      const open = await request(t.server).get('/cb/fail?ok=1').expect(503);
      expect(open.body).toEqual(nestErrorBody(503, 'Service Unavailable'));
      expect(open.headers['retry-after']).toBe('30');
      expect(calls['cb.fail']).toBe(2);
      clock.advance(10_500);
      const later = await request(t.server).get('/cb/fail?ok=1').expect(503);
      expect(later.headers['retry-after']).toBe('20'); // ceil(19.5)
      clock.advance(19_500);
      await request(t.server).get('/cb/fail?ok=1').expect(200);
      expect(t.app.get(CircuitBreakerRegistry).get('BreakerController.fail').stats().state).toBe('CLOSED');
    });

    it('client errors (4xx) do not count as failures by default', async () => {
      for (let index = 0; index < 3; index++) await request(t.server).get('/cb/client-error').expect(404);
      expect(calls['cb.client-error']).toBe(3);
    });

    it('forced open through the registry rejects with 503; reset lets calls through again', async () => {
      const registry = t.app.get(CircuitBreakerRegistry);
      await request(t.server).get('/cb/forced').expect(200);
      registry.forceOpen('BreakerController.forced');
      const refused = await request(t.server).get('/cb/forced').expect(503);
      expect(refused.body).toEqual(nestErrorBody(503, 'Service Unavailable'));
      registry.reset('BreakerController.forced');
      await request(t.server).get('/cb/forced').expect(200);
    });

    it("mode: 'shadow' records and opens but never rejects", async () => {
      for (let index = 0; index < 3; index++) await request(t.server).get('/cb/shadow').expect(500);
      expect(calls['cb.shadow']).toBe(3);
      expect(t.app.get(CircuitBreakerRegistry).get('BreakerController.shadow').stats().state).toBe('OPEN');
    });
  });

  describe('@Retry', () => {
    it('retries an idempotent GET until it succeeds', async () => {
      const response = await driveClock(clock, request(t.server).get('/retry/flaky'));
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ attempt: 3 });
      expect(calls['retry.flaky']).toBe(3);
    });

    it('does not retry a POST unless retryNonIdempotent is set', async () => {
      const post = await driveClock(clock, request(t.server).post('/retry/flaky'));
      expect(post.status).toBe(500);
      expect(calls['retry.flaky-post']).toBe(1);
      const allowed = await driveClock(clock, request(t.server).post('/retry/allowed'));
      expect(allowed.status).toBe(201);
      expect(calls['retry.allowed']).toBe(3);
    });

    it("gives up with the last error's own status (502 stays 502)", async () => {
      const response = await driveClock(clock, request(t.server).get('/retry/bad-gateway'));
      expect(response.status).toBe(502);
      expect(response.body).toEqual({ statusCode: 502, error: 'Bad Gateway', message: 'upstream said no' });
      expect(calls['retry.bad-gateway']).toBe(3);
    });
  });

  describe('@Timeout / @TimeLimit', () => {
    it.each([
      ['/timeout/slow', 'timeout.slow', 1_000],
      ['/timeout/time-limit', 'timeout.time-limit', 500],
    ])('%s answers 504 at the deadline and the handler’s AbortSignal fires', async (path, name, ms) => {
      delete signals[name];
      const pending = request(t.server).get(path).then((response) => response);
      await until(() => signals[name] !== undefined);
      expect(signals[name]!.aborted).toBe(false);
      await clock.advanceAsync(ms - 1);
      expect(signals[name]!.aborted).toBe(false);
      await clock.advanceAsync(1);
      const response = await pending;
      expect(response.status).toBe(504);
      expect(response.body).toEqual(nestErrorBody(504, 'Gateway Timeout'));
      expect(signals[name]!.aborted).toBe(true);
      expect(isTimeoutExceededError(signals[name]!.reason)).toBe(true);
    });

    it('leaves no timer behind after a call that finished in time', async () => {
      const before = clock.pendingTimers;
      await request(t.server).get('/timeout/fast').expect(200, { left: true });
      expect(clock.pendingTimers).toBe(before);
    });
  });

  describe('@Bulkhead', () => {
    it('answers 503 at once when full, and admits again when a permit is free', async () => {
      bulkheadGate = gate();
      const first = request(t.server).get('/bulkhead/one').then((response) => response);
      await until(() => calls['bulkhead.one'] === 1);
      const refused = await request(t.server).get('/bulkhead/one').expect(503);
      expect(refused.body).toEqual(nestErrorBody(503, 'Service Unavailable'));
      expect(calls['bulkhead.one']).toBe(1);
      const stats = t.app.get(BulkheadRegistry).list().find((entry) => entry.name === 'BulkheadController.one');
      expect(stats).toMatchObject({ active: 1, queued: 0, rejected: 1 });
      bulkheadGate.open();
      expect((await first).status).toBe(200);
      await request(t.server).get('/bulkhead/one').expect(200);
    });
  });

  describe('@Fallback', () => {
    it('a function receives the error and the execution context', async () => {
      const response = await request(t.server).get('/fallback/function').expect(200);
      expect(response.body).toEqual({ fallback: 'function', error: 'primary failed', path: '/fallback/function' });
    });

    it('a method name calls that method of the controller instance', async () => {
      const response = await request(t.server).get('/fallback/method').expect(200);
      expect(response.body).toEqual({ fallback: 'method', error: 'primary failed', self: true });
    });

    it('{ value } answers with the value', async () => {
      const response = await request(t.server).get('/fallback/value');
      expect([response.status, response.body]).toEqual([200, { fallback: 'value' }]);
    });

    it('handles limits the errors it replaces; others keep their status', async () => {
      await request(t.server).get('/fallback/filtered?kind=missing').expect(200, { fallback: 'filtered' });
      const bad = await request(t.server).get('/fallback/filtered?kind=bad').expect(400);
      expect(bad.body).toEqual({ statusCode: 400, error: 'Bad Request', message: 'bad input' });
    });

    it('replaces our own rejections too (an open circuit)', async () => {
      await request(t.server).get('/fallback/open-circuit').expect(200, { fallback: 'circuit open' });
      await request(t.server).get('/fallback/open-circuit').expect(200, { fallback: 'circuit open' });
      expect(calls['fallback.open-circuit']).toBe(1);
    });
  });

  describe('@UseResilience', () => {
    it('applies every pattern of the named policy', async () => {
      const response = await driveClock(clock, request(t.server).get('/policy/all'));
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ fallback: 'policy' });
      expect(calls['policy.all']).toBe(2); // retry.maxAttempts
      expect(response.headers['ratelimit-policy']).toContain('q=100');
      expect(t.app.get(CircuitBreakerRegistry).get('full').stats().calls).toBeGreaterThanOrEqual(2);
      expect(t.app.get(BulkheadRegistry).has('full')).toBe(true);
    });

    it('explicit decorators override the policy pattern by pattern', async () => {
      delete signals['policy.override'];
      const pending = request(t.server).get('/policy/override').then((response) => response);
      await until(() => signals['policy.override'] !== undefined);
      await clock.advanceAsync(1_000); // the policy's timeout still applies
      const response = await pending;
      expect(response.status).toBe(504); // the explicit fallback does not handle timeouts
      expect(calls['policy.override']).toBe(1); // the explicit retry allows one attempt
    });
  });
});
