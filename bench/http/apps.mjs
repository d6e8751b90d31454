// The apps of the HTTP benchmark, one per row. Each is built in a child process of its own
// (app.mjs); run.mjs loads it with autocannon from another process. Nest decorators are applied
// by hand with Reflect.decorate, as TypeScript's emitted code does (@nestjs/common loads
// reflect-metadata).
import { AsyncLocalStorage } from 'node:async_hooks';
import { Controller, Get, HttpException, Injectable, Module, UseGuards, UseInterceptors } from '@nestjs/common';
import { from, lastValueFrom } from 'rxjs';

const dist = new URL(process.env.BENCH_DIST ?? '../../dist/', import.meta.url);
const ours = () => import(new URL('index.js', dist).href);
const oursRedis = () => import(new URL('redis.js', dist).href);

/** The header the 10k-keys load rotates. */
export const KEY_HEADER = 'x-client';
const BODY = Object.freeze({ hello: 'world' });
const FALLBACK = Object.freeze({ hello: 'fallback' });
/** A limit nobody reaches within a run. */
const GENEROUS = { limit: 1_000_000_000, window: '1m' };
const BREAKER = { failureRateThreshold: 50, minimumCalls: 20, openDuration: '30s' };
const RETRY = { maxAttempts: 3, delay: '100ms' };
const BULKHEAD = { maxConcurrent: 100, maxQueue: 100 };

/** A class with `methods` (name → [handler, decorators]) and class decorators, as `tsc` would emit it. */
function decorated(name, methods, classDecorators, paramTypes, init) {
  const Class = {
    [name]: class {
      constructor(...deps) {
        init?.(this, ...deps);
      }
    },
  }[name];
  for (const [method, [fn, decorators]] of Object.entries(methods)) {
    Object.defineProperty(Class.prototype, method, { value: fn, writable: true, configurable: true });
    const descriptor = Object.getOwnPropertyDescriptor(Class.prototype, method);
    Object.defineProperty(Class.prototype, method, Reflect.decorate(decorators, Class.prototype, method, descriptor) ?? descriptor);
  }
  if (paramTypes) Reflect.defineMetadata('design:paramtypes', paramTypes, Class);
  return Reflect.decorate(classDecorators, Class);
}

/** A handler named `name` returning a small JSON object. */
function handler(name, body = () => BODY) {
  return { [name]() { return body.call(this); } }[name];
}

/** A controller at `/` whose routes are `/<method name>`. */
function controller(routes, paramTypes, init) {
  const methods = {};
  for (const [path, decorators, body] of routes) methods[path] = [handler(path, body), [Get(path), ...decorators]];
  return decorated('BenchController', methods, [Controller()], paramTypes, init);
}

function appModule(imports, controllers, providers = []) {
  return decorated('AppModule', {}, [Module({ imports, controllers, providers })]);
}

const NoopGuard = decorated('NoopGuard', { canActivate: [() => true, []] }, [Injectable()]);
/** One 429 built once (no stack captured per request): what Nest itself charges for a refusing guard. */
const REFUSAL = new HttpException({ message: 'Too Many Requests', error: 'Too Many Requests', statusCode: 429 }, 429);
const RefusingGuard = decorated('RefusingGuard', { canActivate: [() => { throw REFUSAL; }, []] }, [Injectable()]);
const PassThroughInterceptor = decorated('PassThroughInterceptor', { intercept: [(_context, next) => next.handle(), []] }, [Injectable()]);

/** The app of row 3: every decorator on other routes, `/plain` undecorated. */
async function moduleApp({ timeouts }) {
  const lib = await ours();
  const { ResilienceModule, RateLimit, CircuitBreaker, Retry, Timeout, Bulkhead, Fallback, Hedge, Priority, Chaos, UseResilience, getAbortSignal } = lib;
  const policy = { circuitBreaker: BREAKER, retry: RETRY, bulkhead: BULKHEAD, fallback: { value: FALLBACK }, rateLimit: GENEROUS, ...(timeouts ? { timeout: '5s' } : {}) };
  const providerMethods = { quote: [async function quote() { return { price: 1, signal: getAbortSignal() !== undefined }; }, [Retry(RETRY), ...(timeouts ? [Timeout('5s')] : [])]] };
  const Quotes = decorated('Quotes', providerMethods, [Injectable()]);
  const routes = [
    ['plain', []],
    ['rl', [RateLimit(GENEROUS)]],
    ['cb', [CircuitBreaker(BREAKER)]],
    ['retry', [Retry(RETRY)]],
    ['bulkhead', [Bulkhead(BULKHEAD)]],
    ['fallback', [Fallback({ value: FALLBACK })]],
    ['hedge', [Hedge({ delay: '1s' })]],
    ['priority', [Priority('high')]],
    ['chaos', [Chaos({ enabled: false, error: { rate: 1 } })]],
    ['named', [UseResilience('everything')]],
    ['provider', [], function () { return this.quotes.quote(); }],
  ];
  if (timeouts) routes.push(['timeout', [Timeout('5s')], () => ({ signal: getAbortSignal() !== undefined })]);
  const Bench = controller(routes, [Quotes], (self, quotes) => { self.quotes = quotes; });
  return {
    module: appModule([ResilienceModule.forRoot({ isGlobal: true, policies: { everything: policy } })], [Bench], [Quotes]),
    prepare: routes.map(([path]) => `/${path}`),
  };
}

async function rateLimitApp(settings, store, options = {}) {
  const { ResilienceModule, RateLimit } = await ours();
  return appModule([ResilienceModule.forRoot({ isGlobal: true, ...options, ...(store ? { store } : {}) })], [controller([['hello', [RateLimit(settings)]]])]);
}

async function throttlerApp({ limit, ttl, keyed, storage }) {
  const { ThrottlerModule, ThrottlerGuard } = await import('@nestjs/throttler');
  const options = { throttlers: [{ limit, ttl }], ...(keyed ? { getTracker: (request) => request.headers[KEY_HEADER] } : {}), ...(storage ? { storage } : {}) };
  return appModule([ThrottlerModule.forRoot(options)], [controller([['hello', [UseGuards(ThrottlerGuard)]]])]);
}

const keyedSettings = { ...GENEROUS, key: (context) => context.switchToHttp().getRequest().headers[KEY_HEADER] };

/** The hand-written interceptor of an anchor: `run(next)` returns a promise of the handler's value. */
function anchorInterceptor(run) {
  return decorated('AnchorInterceptor', { intercept: [(_context, next) => from(run(next)), []] }, [Injectable()]);
}

async function retrying(attempt) {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (tries >= RETRY.maxAttempts) throw error;
    }
  }
}

async function redisUrl() {
  const url = process.env.BENCH_REDIS_URL;
  if (!url) throw new Error('BENCH_REDIS_URL is not set');
  return url;
}

/**
 * Rows: `build()` returns the app module (or `{ module, prepare }`); `load` tells run.mjs how to
 * load it (`keys: 10000` rotates the key header); `status` is what the measured route answers.
 */
export const apps = {
  bare: { build: () => appModule([], [controller([['hello', []]])]) },
  guard: { build: () => appModule([], [controller([['hello', [UseGuards(NoopGuard)]]])]) },
  interceptor: { build: () => appModule([], [controller([['hello', [UseInterceptors(PassThroughInterceptor)]]])]) },
  'guard+interceptor': { build: () => appModule([], [controller([['hello', [UseGuards(NoopGuard), UseInterceptors(PassThroughInterceptor)]]])]) },
  'bare+als': {
    build: () => {
      // One AsyncLocalStorage entered once, and kept: its promise hooks stay on for the process.
      const storage = new AsyncLocalStorage();
      storage.run({}, () => undefined);
      globalThis.benchStorage = storage;
      return appModule([], [controller([['hello', []]])]);
    },
  },
  'module:plain': { path: '/plain', build: () => moduleApp({ timeouts: true }) },
  'module:plain-no-timeout': { path: '/plain', build: () => moduleApp({ timeouts: false }) },
  'bare:10k-load': { load: { keys: 10_000 }, build: () => appModule([], [controller([['hello', []]])]) },
  'rl:hot': { build: () => rateLimitApp(GENEROUS) },
  'rl:10k': { load: { keys: 10_000 }, build: () => rateLimitApp(keyedSettings) },
  'throttler:hot': { build: () => throttlerApp({ limit: 1_000_000_000, ttl: 60_000 }) },
  'throttler:10k': { load: { keys: 10_000 }, build: () => throttlerApp({ limit: 1_000_000_000, ttl: 60_000, keyed: true }) },
  full: {
    build: async () => {
      const { ResilienceModule, RateLimit, CircuitBreaker, Retry, Timeout, Bulkhead, Fallback } = await ours();
      const decorators = [RateLimit(GENEROUS), CircuitBreaker(BREAKER), Retry(RETRY), Timeout('5s'), Bulkhead(BULKHEAD), Fallback({ value: FALLBACK })];
      return appModule([ResilienceModule.forRoot({ isGlobal: true })], [controller([['hello', decorators]])]);
    },
  },
  'full:no-rl': {
    build: async () => {
      const { ResilienceModule, CircuitBreaker, Retry, Timeout, Bulkhead, Fallback } = await ours();
      const decorators = [CircuitBreaker(BREAKER), Retry(RETRY), Timeout('5s'), Bulkhead(BULKHEAD), Fallback({ value: FALLBACK })];
      return appModule([ResilienceModule.forRoot({ isGlobal: true })], [controller([['hello', decorators]])]);
    },
  },
  opossum: {
    build: async () => {
      const { default: CircuitBreaker } = await import('opossum');
      const breaker = new CircuitBreaker((next) => lastValueFrom(next.handle()), {
        timeout: 5_000,
        errorThresholdPercentage: BREAKER.failureRateThreshold,
        volumeThreshold: BREAKER.minimumCalls,
        resetTimeout: 30_000,
        capacity: BULKHEAD.maxConcurrent,
      });
      breaker.fallback(() => FALLBACK);
      const Interceptor = anchorInterceptor((next) => retrying(() => breaker.fire(next)));
      return appModule([], [controller([['hello', [UseInterceptors(Interceptor)]]])]);
    },
  },
  cockatiel: {
    build: async () => {
      const { wrap, fallback, retry, circuitBreaker, timeout, bulkhead, handleAll, ExponentialBackoff, SamplingBreaker, TimeoutStrategy } = await import('cockatiel');
      const policy = wrap(
        fallback(handleAll, FALLBACK),
        retry(handleAll, { maxAttempts: RETRY.maxAttempts - 1, backoff: new ExponentialBackoff({ initialDelay: 100 }) }),
        circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new SamplingBreaker({ threshold: 0.5, duration: 60_000, minimumRps: 10 }) }),
        timeout(5_000, TimeoutStrategy.Cooperative),
        bulkhead(BULKHEAD.maxConcurrent, BULKHEAD.maxQueue),
      );
      const Interceptor = anchorInterceptor((next) => policy.execute(() => lastValueFrom(next.handle())));
      return appModule([], [controller([['hello', [UseInterceptors(Interceptor)]]])]);
    },
  },
  'rl:redis': {
    redis: true,
    build: async () => {
      const { RedisStore } = await oursRedis();
      return rateLimitApp(GENEROUS, new RedisStore({ url: await redisUrl() }));
    },
  },
  'throttler:redis': {
    redis: true,
    build: async () => {
      const { ThrottlerStorageRedisService } = await import('@nest-lab/throttler-storage-redis');
      return throttlerApp({ limit: 1_000_000_000, ttl: 60_000, storage: new ThrottlerStorageRedisService(await redisUrl()) });
    },
  },
  'rl:429': { status: 429, build: () => rateLimitApp({ limit: 1, window: '1h' }) },
  'throttler:429': { status: 429, build: () => throttlerApp({ limit: 1, ttl: 3_600_000 }) },

  // Diagnostic rows, run only when BENCH_ROWS names them: what part of a row's cost is what.
  'guard:429': { diagnostic: true, status: 429, build: () => appModule([], [controller([['hello', [UseGuards(RefusingGuard)]]])]) },
  'rl:hot:no-headers': { diagnostic: true, build: () => rateLimitApp(GENEROUS, undefined, { http: { headers: 'none' } }) },
  'rl:hot:key-global': { diagnostic: true, build: () => rateLimitApp({ ...GENEROUS, key: 'global' }) },
  'full:no-timeout': {
    diagnostic: true,
    build: async () => {
      const { ResilienceModule, RateLimit, CircuitBreaker, Retry, Bulkhead, Fallback } = await ours();
      const decorators = [RateLimit(GENEROUS), CircuitBreaker(BREAKER), Retry(RETRY), Bulkhead(BULKHEAD), Fallback({ value: FALLBACK })];
      return appModule([ResilienceModule.forRoot({ isGlobal: true })], [controller([['hello', decorators]])]);
    },
  },
};
