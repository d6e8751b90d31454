import { Controller, Get, Inject, Injectable, Module } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { CircuitBreaker, CircuitBreakerRegistry, FakeClock, RateLimit, ResilienceModule, ResilienceRegistry, Retry } from 'nest-resilience';
import { clientIpOf } from '../../../lib/nest/context/execution-context.util.js';
import { createApp, PLATFORMS, type TestApp } from './support/app.js';

const open: TestApp[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((app) => app.close()));
});

describe.each(PLATFORMS)('handler plans after run-time updates (%s)', (platform) => {
  it('an update of a named policy keeps the state of the inline breaker on the same handler', async () => {
    @Controller('orders')
    class OrdersController {
      @Get()
      @Retry('orders')
      @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
      list(): never {
        throw new Error('down');
      }
    }
    const clock = new FakeClock();
    const app = await createApp(platform, {
      imports: [ResilienceModule.forRoot({ clock, policies: { orders: { retry: { maxAttempts: 1 } } } })],
      controllers: [OrdersController],
    });
    open.push(app);
    await request(app.server).get('/orders').expect(500);
    await request(app.server).get('/orders').expect(503);
    app.app.get(ResilienceRegistry).update('orders', { retry: { maxAttempts: 2, delay: 1 } });
    await request(app.server).get('/orders').expect(503);
    expect(app.app.get(CircuitBreakerRegistry).get('OrdersController.list').state).toBe('OPEN');
  });

  it('every instance of a provider class sees an update, not only the last one built', async () => {
    @Injectable()
    class Quotes {
      calls = 0;
      @Retry('quotes')
      async fetch(): Promise<string> {
        this.calls++;
        throw new Error('flaky');
      }
    }
    @Module({ imports: [ResilienceModule.forRoot({ policies: { quotes: { retry: { maxAttempts: 1 } } } })], providers: [{ provide: 'A', useClass: Quotes }, { provide: 'B', useClass: Quotes }], exports: ['A', 'B'] })
    class QuotesModule {}
    @Controller()
    class Probe {
      constructor(@Inject('A') readonly a: Quotes, @Inject('B') readonly b: Quotes) {}
    }
    const app = await createApp(platform, { imports: [QuotesModule], controllers: [Probe] });
    open.push(app);
    const probe = app.app.get(Probe);
    app.app.get(ResilienceRegistry).update('quotes', { retry: { maxAttempts: 3, delay: 1 } });
    await expect(probe.a.fetch()).rejects.toThrow('flaky');
    await expect(probe.b.fetch()).rejects.toThrow('flaky');
    expect([probe.a.calls, probe.b.calls]).toEqual([3, 3]);
  });

  it('two unnamed limits of one named policy get distinct names', async () => {
    @Controller('login')
    class LoginController {
      @Get()
      @RateLimit('login')
      login(): string {
        return 'ok';
      }
    }
    const app = await createApp(platform, {
      imports: [ResilienceModule.forRoot({ policies: { login: { rateLimit: [{ limit: 2, window: '1s' }, { limit: 5, window: '1h' }] } } })],
      controllers: [LoginController],
    });
    open.push(app);
    const response = await request(app.server).get('/login').expect(200);
    expect(response.headers['ratelimit-policy']).toBe('"login";q=2;w=1, "login-1";q=5;w=3600');
  });
});

describe('bootstrap checks of the Nest layer', () => {
  it('refuses maxWait on a request handler, naming the class, method, decorator and option', async () => {
    @Controller('wait')
    class WaitController {
      @Get()
      @RateLimit({ limit: 1, maxWait: '1s' })
      wait(): string {
        return 'ok';
      }
    }
    await expect(createApp('express', { imports: [ResilienceModule.forRoot()], controllers: [WaitController] })).rejects.toThrow(
      /@RateLimit on WaitController\.wait: invalid option "rateLimit\.maxWait": got "1s"; expected no maxWait on a request handler/,
    );
  });
});

const fromHeader = (handshake: unknown): string | undefined => (handshake as { headers: Record<string, string> }).headers['x-real-ip'];

describe('fleet-wide instances need a store shared by the fleet', () => {
  it('refuses shared: true and distributed: true on the memory store, and fleet options without them', async () => {
    @Controller('fleet')
    class FleetController {
      @Get()
      @CircuitBreaker({ shared: true })
      get(): string {
        return 'ok';
      }
    }
    await expect(createApp('express', { imports: [ResilienceModule.forRoot()], controllers: [FleetController] })).rejects.toThrow(
      /@CircuitBreaker on FleetController\.get: invalid option "circuitBreaker\.shared": got true; expected a store shared by the fleet \(RedisStore/,
    );
    await expect(
      createApp('express', { imports: [ResilienceModule.forRoot({ policies: { p: { bulkhead: { distributed: true } } } })] }),
    ).rejects.toThrow(/policy "p": invalid option "bulkhead\.distributed": got true/);
    await expect(
      createApp('express', { imports: [ResilienceModule.forRoot({ policies: { p: { circuitBreaker: { quorum: 2 } } } })] }),
    ).rejects.toThrow(/"circuitBreaker\.quorum": got 2; expected shared: true/);
  });
});

describe('client address of a WebSocket message', () => {
  it('uses the custom extractor on the handshake, falling back to the socket address', () => {
    const client = { handshake: { address: '10.0.0.1', headers: { 'x-real-ip': '203.0.113.7' } } };
    const context = new ExecutionContextHost([client, {}]);
    context.setType('ws');
    expect(clientIpOf(context, 64)).toBe('10.0.0.1');
    expect(clientIpOf(context, 64, fromHeader)).toBe('203.0.113.7');
    expect(clientIpOf(context, 64, () => undefined)).toBe('10.0.0.1');
  });
});
