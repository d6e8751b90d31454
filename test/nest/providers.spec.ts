import { Inject, Injectable, Module, Scope, SetMetadata, type Provider } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Bulkhead,
  BulkheadRegistry,
  CircuitBreaker,
  CircuitBreakerRegistry,
  Fallback,
  FakeClock,
  RateLimit,
  RateLimiterRegistry,
  ResilienceModule,
  ResilienceRegistry,
  Retry,
  Timeout,
  getAbortSignal,
  isBulkheadRejectedError,
  isCircuitOpenError,
  isOperationAbortedError,
  isRateLimitExceededError,
  isTimeoutExceededError,
  type ResilienceModuleOptions,
} from 'nest-resilience';

// ---------------------------------------------------------------------------------------------
// Harness: a testing module with the ResilienceModule on a fake clock; every context is closed.

const opened: TestingModule[] = [];

afterEach(async () => {
  while (opened.length > 0) await opened.pop()!.close();
});

async function boot(providers: Provider[], options: ResilienceModuleOptions = {}): Promise<{ moduleRef: TestingModule; clock: FakeClock }> {
  const clock = new FakeClock();
  const moduleRef = await Test.createTestingModule({ imports: [ResilienceModule.forRoot({ clock, ...options })], providers }).compile();
  opened.push(moduleRef);
  await moduleRef.init();
  return { moduleRef, clock };
}

/** Bootstraps and returns the error it fails with. */
async function bootError(providers: Provider[], options: ResilienceModuleOptions = {}): Promise<Error> {
  const moduleRef = await Test.createTestingModule({ imports: [ResilienceModule.forRoot({ clock: new FakeClock(), ...options })], providers }).compile();
  try {
    await moduleRef.init();
  } catch (error) {
    await moduleRef.close().catch(() => undefined);
    return error as Error;
  }
  await moduleRef.close();
  throw new Error('bootstrap was expected to fail');
}

/** Settles a promise's state without waiting: 'pending' until it settles. */
function track<T>(promise: Promise<T>): { readonly state: 'pending' | 'resolved' | 'rejected'; readonly value: T | undefined; readonly error: unknown } {
  const result = { state: 'pending' as 'pending' | 'resolved' | 'rejected', value: undefined as T | undefined, error: undefined as unknown };
  promise.then(
    (value) => Object.assign(result, { state: 'resolved', value }),
    (error: unknown) => Object.assign(result, { state: 'rejected', error }),
  );
  return result;
}

const CUSTOM = 'test:custom-metadata';

const ping = (): string => 'pong';

// ---------------------------------------------------------------------------------------------

describe('provider methods: each decorator through the explorer', () => {
  it('@Retry: a flaky provider is retried with its backoff, `this` intact', async () => {
    @Injectable()
    class FlakyClient {
      attempts = 0;
      @Retry({ maxAttempts: 3, backoff: 'constant', delay: 100, jitter: 'none' })
      async fetch(id: string): Promise<string> {
        this.attempts++;
        if (this.attempts < 3) throw new Error(`flaky ${this.attempts}`);
        return `ok ${id} after ${this.attempts}`;
      }
    }
    const { moduleRef, clock } = await boot([FlakyClient]);
    const client = moduleRef.get(FlakyClient);
    const call = track(client.fetch('42'));
    await clock.advanceAsync(0);
    expect(client.attempts).toBe(1);
    await clock.advanceAsync(99);
    expect(client.attempts).toBe(1);
    await clock.advanceAsync(1);
    expect(client.attempts).toBe(2);
    await clock.advanceAsync(100);
    expect(call.state).toBe('resolved');
    expect(call.value).toBe('ok 42 after 3');
    expect(clock.pendingTimers).toBe(0);
  });

  it('@Retry that gives up re-throws the method\'s own last error', async () => {
    @Injectable()
    class AlwaysDown {
      attempts = 0;
      @Retry({ maxAttempts: 2, delay: 0 })
      async fetch(): Promise<string> {
        this.attempts++;
        throw new Error(`down ${this.attempts}`);
      }
    }
    const { moduleRef } = await boot([AlwaysDown]);
    const service = moduleRef.get(AlwaysDown);
    await expect(service.fetch()).rejects.toThrow('down 2');
    expect(service.attempts).toBe(2);
  });

  it('@CircuitBreaker: opens after the failures, rejects without calling, probes after openDuration', async () => {
    @Injectable()
    class Payments {
      calls = 0;
      healthy = false;
      @CircuitBreaker({ consecutiveFailures: 2, openDuration: '30s' })
      async charge(): Promise<string> {
        this.calls++;
        if (!this.healthy) throw new Error('payments down');
        return 'charged';
      }
    }
    const { moduleRef, clock } = await boot([Payments]);
    const payments = moduleRef.get(Payments);
    await expect(payments.charge()).rejects.toThrow('payments down');
    await expect(payments.charge()).rejects.toThrow('payments down');
    const rejected = await payments.charge().catch((error: unknown) => error);
    expect(isCircuitOpenError(rejected)).toBe(true);
    expect(payments.calls).toBe(2);
    expect(moduleRef.get(CircuitBreakerRegistry).get('Payments.charge').state).toBe('OPEN');
    payments.healthy = true;
    await clock.advanceAsync(30_000);
    await expect(payments.charge()).resolves.toBe('charged');
    expect(payments.calls).toBe(3);
    expect(moduleRef.get(CircuitBreakerRegistry).get('Payments.charge').state).toBe('CLOSED');
  });

  it('@Timeout: rejects with TimeoutExceededError at the deadline and fires the method\'s AbortSignal', async () => {
    @Injectable()
    class Slow {
      signal: AbortSignal | undefined;
      settled = false;
      @Timeout('1s')
      async run(): Promise<string> {
        this.signal = getAbortSignal();
        await new Promise<void>((resolve) => this.signal!.addEventListener('abort', () => resolve(), { once: true }));
        this.settled = true;
        return 'too late';
      }
    }
    const { moduleRef, clock } = await boot([Slow]);
    const slow = moduleRef.get(Slow);
    const call = track(slow.run());
    await clock.advanceAsync(999);
    expect(call.state).toBe('pending');
    expect(slow.signal).toBeInstanceOf(AbortSignal);
    expect(slow.signal!.aborted).toBe(false);
    await clock.advanceAsync(1);
    expect(call.state).toBe('rejected');
    expect(isTimeoutExceededError(call.error)).toBe(true);
    expect(slow.signal!.aborted).toBe(true);
    expect(isTimeoutExceededError(slow.signal!.reason)).toBe(true);
    expect(slow.settled).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it('@Bulkhead(name): one bulkhead shared by two methods of two providers caps their combined concurrency', async () => {
    const gates: Array<() => void> = [];
    const load = { running: 0, peak: 0 };
    const work = async (label: string): Promise<string> => {
      load.running++;
      load.peak = Math.max(load.peak, load.running);
      await new Promise<void>((resolve) => gates.push(resolve));
      load.running--;
      return label;
    };
    @Injectable()
    class Inventory {
      @Bulkhead('downstream')
      reserve(id: string): Promise<string> {
        return work(`reserve ${id}`);
      }
    }
    @Injectable()
    class Shipping {
      @Bulkhead('downstream')
      book(id: string): Promise<string> {
        return work(`book ${id}`);
      }
    }
    const { moduleRef, clock } = await boot([Inventory, Shipping], {
      policies: { downstream: { bulkhead: { maxConcurrent: 2, maxQueue: 1 } } },
    });
    const inventory = moduleRef.get(Inventory);
    const shipping = moduleRef.get(Shipping);
    const registry = moduleRef.get(BulkheadRegistry);
    expect(registry.list().map((entry) => entry.name)).toEqual(['downstream']);

    const first = track(inventory.reserve('a'));
    const second = track(shipping.book('b'));
    const queued = track(inventory.reserve('c'));
    const refused = track(shipping.book('d'));
    await clock.advanceAsync(0);
    expect(load.running).toBe(2);
    expect(registry.get('downstream').stats()).toMatchObject({ active: 2, queued: 1 });
    expect(refused.state).toBe('rejected');
    expect(isBulkheadRejectedError(refused.error)).toBe(true);

    gates.shift()!();
    await clock.advanceAsync(0);
    expect(first.state).toBe('resolved');
    expect(load.running).toBe(2);
    while (gates.length > 0) {
      gates.shift()!();
      await clock.advanceAsync(0);
    }
    expect([first.value, second.value, queued.value]).toEqual(['reserve a', 'book b', 'reserve c']);
    expect(load.peak).toBe(2);
    expect(registry.list()).toEqual([expect.objectContaining({ name: 'downstream', active: 0, queued: 0, rejected: 1 })]);
  });

  it('@Fallback(\'method\') calls a method of the same class with (error, ...args) and `this` intact', async () => {
    @Injectable()
    class Quotes {
      readonly source = 'cache';
      @Fallback('cachedQuote')
      async quote(symbol: string, currency: string): Promise<string> {
        throw new Error(`feed down for ${symbol}/${currency}`);
      }
      cachedQuote(error: Error, symbol: string, currency: string): string {
        return `${this.source}:${symbol}:${currency} (${error.message})`;
      }
    }
    const { moduleRef } = await boot([Quotes]);
    await expect(moduleRef.get(Quotes).quote('ACME', 'EUR')).resolves.toBe('cache:ACME:EUR (feed down for ACME/EUR)');
  });

  it('@Fallback(fn) and @Fallback({ value }); a failing fallback surfaces its own error', async () => {
    @Injectable()
    class Catalog {
      @Fallback((error: unknown, id: string) => `fn ${id} ${(error as Error).message}`)
      async byFunction(id: string): Promise<string> {
        throw new Error(`boom`, { cause: id });
      }
      @Fallback({ value: [] })
      async byValue(): Promise<string[]> {
        throw new Error('boom');
      }
      @Fallback(() => {
        throw new Error('fallback failed too');
      })
      async broken(): Promise<string> {
        throw new Error('boom');
      }
    }
    const { moduleRef } = await boot([Catalog]);
    const catalog = moduleRef.get(Catalog);
    await expect(catalog.byFunction('7')).resolves.toBe('fn 7 boom');
    await expect(catalog.byValue()).resolves.toEqual([]);
    await expect(catalog.broken()).rejects.toThrow('fallback failed too');
  });

  it('@Fallback(\'missing\') is a bootstrap error naming the class and method', async () => {
    @Injectable()
    class NoSuchFallback {
      @Fallback('nowhere')
      async run(): Promise<void> {}
    }
    const error = await bootError([NoSuchFallback]);
    expect(error.message).toContain('NoSuchFallback.run');
    expect(error.message).toContain('nowhere');
  });

  it('@RateLimit({ key: \'global\' }) on a provider method: the budget is enforced, refills with the window', async () => {
    @Injectable()
    class Mailer {
      sent = 0;
      @RateLimit({ limit: 2, window: '1m', key: 'global' })
      async send(): Promise<number> {
        return ++this.sent;
      }
    }
    const { moduleRef, clock } = await boot([Mailer]);
    const mailer = moduleRef.get(Mailer);
    await expect(mailer.send()).resolves.toBe(1);
    await expect(mailer.send()).resolves.toBe(2);
    const refused = await mailer.send().catch((error: unknown) => error);
    expect(isRateLimitExceededError(refused)).toBe(true);
    expect(mailer.sent).toBe(2);
    expect(moduleRef.get(RateLimiterRegistry).get('Mailer.send').describe()).toMatchObject({ admitted: 2, rejected: 1 });
    // The default sliding-window counter still weighs the previous window right after it ends.
    await clock.advanceAsync(60_000);
    const later = await mailer.send().catch((error: unknown) => error);
    expect(isRateLimitExceededError(later)).toBe(true);
    const retryAfterMs = (later as { retryAfterMs: number }).retryAfterMs;
    expect(retryAfterMs).toBeGreaterThan(0);
    await clock.advanceAsync(retryAfterMs);
    await expect(mailer.send()).resolves.toBe(3);
  });

  it('@RateLimit with a per-client key on a provider method is a bootstrap error', async () => {
    @Injectable()
    class PerIp {
      @RateLimit({ limit: 2, window: '1m', key: 'ip' })
      async send(): Promise<void> {}
    }
    const error = await bootError([PerIp]);
    expect(error.message).toMatch(/PerIp\.send/);
    expect(error.message).toMatch(/key/);
  });
});

describe('provider methods: class-level decorators, identity and metadata', () => {
  it('a class-level decorator applies to every method; a method-level one overrides it; lifecycle hooks are left alone', async () => {
    const hookCalls: string[] = [];
    @Injectable()
    @Retry({ maxAttempts: 2, delay: 0 })
    class Repository {
      attempts = { find: 0, save: 0, remove: 0 };
      onModuleInit(): void {
        hookCalls.push('init');
      }
      async find(): Promise<void> {
        this.attempts.find++;
        throw new Error('find failed');
      }
      async save(): Promise<void> {
        this.attempts.save++;
        throw new Error('save failed');
      }
      @Retry({ maxAttempts: 4, delay: 0 })
      async remove(): Promise<void> {
        this.attempts.remove++;
        throw new Error('remove failed');
      }
    }
    const { moduleRef } = await boot([Repository]);
    const repository = moduleRef.get(Repository);
    await expect(repository.find()).rejects.toThrow('find failed');
    await expect(repository.save()).rejects.toThrow('save failed');
    await expect(repository.remove()).rejects.toThrow('remove failed');
    expect(repository.attempts).toEqual({ find: 2, save: 2, remove: 4 });
    expect(Object.hasOwn(repository, 'onModuleInit')).toBe(false);
    expect(hookCalls).toEqual(['init']);
  });

  it('keeps `this`, the name, the length and other metadata of the wrapped method, and wraps it once', async () => {
    @Injectable()
    class Directory {
      readonly tenant = 't1';
      calls = 0;
      @SetMetadata(CUSTOM, { audited: true })
      @Retry({ maxAttempts: 3, delay: 0 })
      async lookup(id: string, options?: { fresh: boolean }): Promise<string> {
        this.calls++;
        if (options?.fresh) throw new Error('no fresh data');
        return `${this.tenant}/${id}`;
      }
      plain(): string {
        return this.tenant;
      }
    }
    const { moduleRef } = await boot([Directory]);
    const directory = moduleRef.get(Directory);
    const reflector = moduleRef.get(Reflector);
    expect(Object.hasOwn(directory, 'lookup')).toBe(true);
    expect(directory.lookup).not.toBe(Directory.prototype.lookup);
    expect(directory.lookup.name).toBe('lookup');
    expect(directory.lookup.length).toBe(Directory.prototype.lookup.length);
    expect(reflector.get(CUSTOM, directory.lookup)).toEqual({ audited: true });
    expect(Reflect.getMetadata(CUSTOM, directory.lookup)).toEqual({ audited: true });
    await expect(directory.lookup('a')).resolves.toBe('t1/a');
    directory.calls = 0;
    await expect(directory.lookup('a', { fresh: true })).rejects.toThrow('no fresh data');
    // Wrapped twice, the retry would run 3 × 3 times.
    expect(directory.calls).toBe(3);
    // Only decorated methods are touched.
    expect(Object.hasOwn(directory, 'plain')).toBe(false);
  });

  it('a bound copy made in the constructor is the one wrapped (detached calls keep `this`)', async () => {
    @Injectable()
    class Bound {
      readonly who = 'bound';
      calls = 0;
      constructor() {
        this.greet = this.greet.bind(this);
      }
      @Retry({ maxAttempts: 2, delay: 0 })
      async greet(): Promise<string> {
        this.calls++;
        if (this.calls === 1) throw new Error('first call fails');
        return this.who;
      }
    }
    const { moduleRef } = await boot([Bound]);
    const { greet } = moduleRef.get(Bound);
    await expect(greet()).resolves.toBe('bound');
    expect(moduleRef.get(Bound).calls).toBe(2);
  });
});

describe('provider methods: wrapped exactly once', () => {
  @Injectable()
  class Counter {
    calls = 0;
    @Retry({ maxAttempts: 3, delay: 0 })
    async fail(): Promise<void> {
      this.calls++;
      throw new Error('always');
    }
  }

  async function callsPerFailure(counter: Counter): Promise<number> {
    counter.calls = 0;
    await expect(counter.fail()).rejects.toThrow('always');
    return counter.calls;
  }

  it('the testing module initialised, then an application created and initialised on it (hooks run twice)', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [ResilienceModule.forRoot({ clock: new FakeClock() })], providers: [Counter] }).compile();
    opened.push(moduleRef);
    await moduleRef.init();
    const app = moduleRef.createNestApplication();
    await app.init();
    await app.init();
    expect(await callsPerFailure(app.get(Counter))).toBe(3);
  });

  it('one instance under several tokens (class, useExisting alias, useValue of the same object)', async () => {
    const shared = new Counter();
    const { moduleRef } = await boot([
      { provide: 'COUNTER', useValue: shared },
      { provide: 'COUNTER_AGAIN', useValue: shared },
      { provide: 'COUNTER_ALIAS', useExisting: 'COUNTER' },
    ]);
    expect(moduleRef.get('COUNTER_ALIAS')).toBe(shared);
    expect(await callsPerFailure(shared)).toBe(3);
  });

  it('ResilienceModule.forRoot imported by two modules: each wraps its own module\'s providers with its own options, once', async () => {
    @Injectable()
    class OrdersClient {
      calls = 0;
      @Retry('orders')
      async fail(): Promise<void> {
        this.calls++;
        throw new Error('always');
      }
    }
    @Injectable()
    class BillingClient {
      calls = 0;
      @Retry('billing')
      async fail(): Promise<void> {
        this.calls++;
        throw new Error('always');
      }
    }
    // Nest instantiates our interceptor for every module holding a decorated provider, so that
    // module must reach a ResilienceModule: here through OrdersModule's re-export.
    @Module({
      imports: [ResilienceModule.forRoot({ clock: new FakeClock(), policies: { orders: { retry: { maxAttempts: 2, delay: 0 } } } })],
      providers: [OrdersClient],
      exports: [OrdersClient, ResilienceModule],
    })
    class OrdersModule {}
    @Module({
      imports: [ResilienceModule.forRoot({ clock: new FakeClock(), policies: { billing: { retry: { maxAttempts: 4, delay: 0 } } } })],
      providers: [BillingClient],
      exports: [BillingClient],
    })
    class BillingModule {}
    @Module({ imports: [OrdersModule, BillingModule], providers: [Counter] })
    class AppModule {}

    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    opened.push(moduleRef);
    await moduleRef.init();
    const orders = moduleRef.get(OrdersClient);
    const billing = moduleRef.get(BillingClient);
    await expect(orders.fail()).rejects.toThrow('always');
    await expect(billing.fail()).rejects.toThrow('always');
    expect([orders.calls, billing.calls]).toEqual([2, 4]);
    expect(await callsPerFailure(moduleRef.get(Counter))).toBe(3);
  });

  it('a global ResilienceModule and a feature module importing its own: the feature\'s providers use the feature\'s', async () => {
    @Injectable()
    class FeatureClient {
      calls = 0;
      @Retry('shared')
      async fail(): Promise<void> {
        this.calls++;
        throw new Error('always');
      }
    }
    @Injectable()
    class RootClient {
      calls = 0;
      @Retry('shared')
      async fail(): Promise<void> {
        this.calls++;
        throw new Error('always');
      }
    }
    @Module({
      imports: [ResilienceModule.forRoot({ clock: new FakeClock(), policies: { shared: { retry: { maxAttempts: 5, delay: 0 } } } })],
      providers: [FeatureClient],
    })
    class FeatureModule {}
    @Module({
      imports: [ResilienceModule.forRoot({ isGlobal: true, clock: new FakeClock(), policies: { shared: { retry: { maxAttempts: 2, delay: 0 } } } }), FeatureModule],
      providers: [RootClient],
    })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    opened.push(moduleRef);
    await moduleRef.init();
    const feature = moduleRef.get(FeatureClient);
    const root = moduleRef.get(RootClient);
    await expect(feature.fail()).rejects.toThrow('always');
    await expect(root.fail()).rejects.toThrow('always');
    expect([feature.calls, root.calls]).toEqual([5, 2]);
  });
});

describe('provider methods: run-time updates and shutdown', () => {
  it('ResilienceRegistry.update of a named policy takes effect on the next call of a wrapped method', async () => {
    @Injectable()
    class Upstream {
      calls = 0;
      @Retry('upstream')
      async fail(): Promise<void> {
        this.calls++;
        throw new Error('always');
      }
    }
    const { moduleRef } = await boot([Upstream], { policies: { upstream: { retry: { maxAttempts: 2, delay: 0 } } } });
    const upstream = moduleRef.get(Upstream);
    await expect(upstream.fail()).rejects.toThrow('always');
    expect(upstream.calls).toBe(2);
    moduleRef.get(ResilienceRegistry).update('upstream', { retry: { maxAttempts: 5, delay: 0 } });
    upstream.calls = 0;
    await expect(upstream.fail()).rejects.toThrow('always');
    expect(upstream.calls).toBe(5);
  });

  it('closing the application settles a call in its retry sleep with OperationAbortedError, leaves no timer, and refuses later calls', async () => {
    @Injectable()
    class Sleepy {
      calls = 0;
      @Retry({ maxAttempts: 3, delay: '10s', jitter: 'none' })
      async fail(): Promise<void> {
        this.calls++;
        throw new Error('down');
      }
    }
    const { moduleRef, clock } = await boot([Sleepy]);
    const sleepy = moduleRef.get(Sleepy);
    const call = track(sleepy.fail());
    await clock.advanceAsync(0);
    expect(sleepy.calls).toBe(1);
    expect(clock.pendingTimers).toBe(1);
    await opened.pop()!.close();
    await clock.advanceAsync(0);
    expect(call.state).toBe('rejected');
    expect(isOperationAbortedError(call.error)).toBe(true);
    expect(clock.pendingTimers).toBe(0);
    await expect(sleepy.fail()).rejects.toSatisfy(isOperationAbortedError);
    expect(sleepy.calls).toBe(1);
  });
});

describe('provider methods: scopes', () => {
  it('a request-scoped provider with a decorator is refused at bootstrap, naming Class@method', async () => {
    @Injectable({ scope: Scope.REQUEST })
    class PerRequest {
      @Retry({ maxAttempts: 2 })
      async fetch(): Promise<void> {}
    }
    const error = await bootError([PerRequest]);
    expect(error.message).toContain('PerRequest@fetch');
    expect(error.message).toContain('REQUEST');
    expect(error.message).toMatch(/singleton/);
  });

  it('a transient provider with a decorator is refused at bootstrap, naming Class@method', async () => {
    @Injectable({ scope: Scope.TRANSIENT })
    class PerConsumer {
      @CircuitBreaker()
      async fetch(): Promise<void> {}
    }
    @Injectable()
    class Consumer {
      constructor(readonly dependency: PerConsumer) {}
    }
    const error = await bootError([PerConsumer, Consumer]);
    expect(error.message).toContain('PerConsumer@fetch');
    expect(error.message).toContain('TRANSIENT');
  });

  it('a provider made request-scoped by a dependency is refused too', async () => {
    @Injectable({ scope: Scope.REQUEST })
    class RequestInfo {}
    @Injectable()
    class UsesRequest {
      constructor(@Inject(RequestInfo) readonly info: RequestInfo) {}
      @Timeout('1s')
      async fetch(): Promise<void> {}
    }
    const error = await bootError([RequestInfo, UsesRequest]);
    expect(error.message).toContain('UsesRequest@fetch');
    expect(error.message).toContain('REQUEST');
  });

  it('undecorated request-scoped and transient providers are fine', async () => {
    @Injectable({ scope: Scope.REQUEST })
    class PlainRequest {
      run(): number {
        return 1;
      }
    }
    @Injectable({ scope: Scope.TRANSIENT })
    class PlainTransient {
      run(): number {
        return 2;
      }
    }
    await expect(boot([PlainRequest, PlainTransient])).resolves.toBeDefined();
  });
});

describe('explorer robustness', () => {
  @Injectable()
  class Decorated {
    calls = 0;
    @Retry({ maxAttempts: 2, delay: 0 })
    async fail(): Promise<void> {
      this.calls++;
      throw new Error('always');
    }
  }

  it('providers with throwing getters (on the prototype or the instance), plain objects, primitives, proxies and null prototypes boot', async () => {
    @Injectable()
    class Getters {
      calls = 0;
      constructor() {
        Object.defineProperty(this, 'explodes', {
          get() {
            throw new Error('instance getter');
          },
          enumerable: true,
        });
      }
      get broken(): string {
        throw new Error('prototype getter');
      }
      @Retry({ maxAttempts: 2, delay: 0 })
      async fail(): Promise<void> {
        this.calls++;
        throw new Error('always');
      }
    }
    // Nest itself reads a value provider's prototype and lifecycle hooks: everything else throws.
    const hostile = new Proxy(
      {},
      {
        get: () => undefined,
        getOwnPropertyDescriptor() {
          throw new Error('proxy descriptor');
        },
        ownKeys() {
          throw new Error('proxy ownKeys');
        },
      },
    );
    const plain = { ping };
    const { moduleRef } = await boot([
      Getters,
      { provide: 'PLAIN', useValue: plain },
      { provide: 'FACTORY_PLAIN', useFactory: () => ({ ping }) },
      { provide: 'NULL', useValue: null },
      { provide: 'UNDEFINED', useFactory: () => undefined },
      { provide: 'NUMBER', useValue: 42 },
      { provide: 'STRING', useFactory: () => 'text' },
      { provide: 'FUNCTION', useValue: ping },
      { provide: 'PROXY', useValue: hostile },
      { provide: 'NULL_PROTOTYPE', useValue: Object.create(null) as object },
      { provide: 'ASYNC', useFactory: async () => ({ ping }) },
    ]);
    const getters = moduleRef.get(Getters);
    await expect(getters.fail()).rejects.toThrow('always');
    expect(getters.calls).toBe(2);
    expect(moduleRef.get<{ ping: () => string }>('PLAIN').ping).toBe(ping);
    expect(Object.keys(moduleRef.get<object>('PLAIN'))).toEqual(['ping']);
    expect(moduleRef.get<{ ping: () => string }>('FACTORY_PLAIN').ping).toBe(ping);
  });

  it('class instances made by useValue and useFactory (sync and async) are wrapped, once each', async () => {
    const byValue = new Decorated();
    const { moduleRef } = await boot([
      { provide: 'BY_VALUE', useValue: byValue },
      { provide: 'BY_FACTORY', useFactory: () => new Decorated() },
      { provide: 'BY_ASYNC_FACTORY', useFactory: async () => new Decorated() },
    ]);
    for (const token of ['BY_VALUE', 'BY_FACTORY', 'BY_ASYNC_FACTORY']) {
      const instance = moduleRef.get<Decorated>(token);
      await expect(instance.fail()).rejects.toThrow('always');
      expect({ token, calls: instance.calls }).toEqual({ token, calls: 2 });
    }
  });

  it('a subclass inherits its parent\'s decorated methods (labelled by the subclass)', async () => {
    class BaseClient {
      calls = 0;
      @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
      async fetch(): Promise<void> {
        this.calls++;
        throw new Error('down');
      }
    }
    @Injectable()
    class ConcreteClient extends BaseClient {}
    const { moduleRef } = await boot([ConcreteClient]);
    const client = moduleRef.get(ConcreteClient);
    await expect(client.fetch()).rejects.toThrow('down');
    await expect(client.fetch()).rejects.toSatisfy(isCircuitOpenError);
    expect(client.calls).toBe(1);
    expect(moduleRef.get(CircuitBreakerRegistry).has('ConcreteClient.fetch')).toBe(true);
  });

  it('a frozen instance with decorated methods is a bootstrap error naming Class@method', async () => {
    const error = await bootError([{ provide: 'FROZEN', useValue: Object.freeze(new Decorated()) }]);
    expect(error.message).toContain('Decorated@fail');
    expect(error.message).toMatch(/frozen/);
  });

  it('a gateway or resolver (recognised by metadata) is treated like a controller: validated, not wrapped', async () => {
    // What @WebSocketGateway + @SubscribeMessage and @nestjs/graphql's @Resolver + @Query write.
    @Injectable()
    @SetMetadata('websockets:is_gateway', true)
    class FakeGateway {
      @SetMetadata('websockets:message_mapping', true)
      @RateLimit({ limit: 1, window: '1m' })
      handle(): string {
        return 'handled';
      }
    }
    @Injectable()
    @SetMetadata('graphql:resolver_type', undefined)
    class FakeResolver {
      @SetMetadata('graphql:resolver_type', 'Query')
      @Retry({ maxAttempts: 3, delay: 0 })
      books(): string[] {
        return [];
      }
    }
    const { moduleRef } = await boot([FakeGateway, FakeResolver]);
    // Key 'ip' would be refused on a provider method; here it is a message handler's limit.
    expect(moduleRef.get(RateLimiterRegistry).has('FakeGateway.handle')).toBe(true);
    expect(Object.hasOwn(moduleRef.get(FakeGateway), 'handle')).toBe(false);
    expect(Object.hasOwn(moduleRef.get(FakeResolver), 'books')).toBe(false);
    expect(moduleRef.get(FakeGateway).handle()).toBe('handled');
  });

  it('a decorator on a gateway method that is not a message handler is a bootstrap error', async () => {
    @Injectable()
    @SetMetadata('websockets:is_gateway', true)
    class GatewayWithHelper {
      @Retry({ maxAttempts: 2 })
      async helper(): Promise<void> {}
    }
    const error = await bootError([GatewayWithHelper]);
    expect(error.message).toContain('GatewayWithHelper@helper');
    expect(error.message).toMatch(/message handler/);
  });

  it('no timer of ours is left once calls settle and the module closes', async () => {
    @Injectable()
    class InFlight {
      @Timeout('5s')
      @Retry({ maxAttempts: 2, delay: 1000 })
      async hang(): Promise<void> {
        await new Promise(() => undefined);
      }
    }
    const { moduleRef, clock } = await boot([InFlight]);
    const call = track(moduleRef.get(InFlight).hang());
    await clock.advanceAsync(0);
    expect(clock.pendingTimers).toBe(1);
    await clock.advanceAsync(5_000);
    expect(call.state).toBe('pending');
    await clock.advanceAsync(1_000 + 5_000);
    expect(call.state).toBe('rejected');
    expect(isTimeoutExceededError(call.error)).toBe(true);
    await opened.pop()!.close();
    expect(clock.pendingTimers).toBe(0);
  });
});
