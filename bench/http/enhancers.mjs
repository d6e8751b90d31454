// Our guard and interceptor without HTTP: CPU ns per request through `RateLimitGuard.canActivate`
// and `ResilienceInterceptor.intercept` (subscribed to the end), on a real Nest execution context
// with a Fastify-like request and reply. What the HTTP rows cannot resolve on a shared machine:
// sub-µs changes of our own code. Nest's machinery around enhancers and the socket are not in it.
//
//   node bench/http/enhancers.mjs [row...]      rows: see `rows` below (all by default)
//   BENCH_DIST=<dir>/  which build to load (default: dist/)   BENCH_CALLS=200000  per round
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { lastValueFrom, of } from 'rxjs';

const dist = new URL(process.env.BENCH_DIST ?? '../../dist/', import.meta.url);
const { ResilienceModule, RateLimit, CircuitBreaker, Retry, Timeout, Bulkhead, Fallback, RateLimitGuard, ResilienceInterceptor } = await import(new URL('index.js', dist).href);
const { ResilienceService } = await import(new URL('nest/resilience.service.js', dist).href);

const CALLS = Number(process.env.BENCH_CALLS ?? 200_000);
const ROUNDS = 5;
const BODY = Object.freeze({ hello: 'world' });
const GENEROUS = { limit: 1_000_000_000, window: '1m' };
const BREAKER = { failureRateThreshold: 50, minimumCalls: 20, openDuration: '30s' };
const RETRY = { maxAttempts: 3, delay: '100ms' };
const BULKHEAD = { maxConcurrent: 100, maxQueue: 100 };
const FALLBACK = { value: { hello: 'fallback' } };

/** Rows: the handler's decorators; the guard runs when there is a @RateLimit, the interceptor when there is anything else. */
const rows = {
  'rl:hot': [RateLimit(GENEROUS)],
  'rl:429': [RateLimit({ limit: 1, window: '1h' })],
  'full:no-timeout': [RateLimit(GENEROUS), CircuitBreaker(BREAKER), Retry(RETRY), Bulkhead(BULKHEAD), Fallback(FALLBACK)],
  timeout: [Timeout('5s')],
  'full:no-rl': [CircuitBreaker(BREAKER), Retry(RETRY), Timeout('5s'), Bulkhead(BULKHEAD), Fallback(FALLBACK)],
  full: [RateLimit(GENEROUS), CircuitBreaker(BREAKER), Retry(RETRY), Timeout('5s'), Bulkhead(BULKHEAD), Fallback(FALLBACK)],
};

class Bench {}
for (const [name, decorators] of Object.entries(rows)) {
  Object.defineProperty(Bench.prototype, name, { value: { [name]: () => BODY }[name], writable: true, configurable: true });
  const descriptor = Object.getOwnPropertyDescriptor(Bench.prototype, name);
  Object.defineProperty(Bench.prototype, name, Reflect.decorate([Get(name.replace(':', '-')), ...decorators], Bench.prototype, name, descriptor) ?? descriptor);
}
const BenchController = Reflect.decorate([Controller()], Bench);
const AppModule = Reflect.decorate([Module({ imports: [ResilienceModule.forRoot({ isGlobal: true })], controllers: [BenchController] })], class AppModule {});

const app = await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false });
await app.init();
const resilience = app.get(ResilienceService, { strict: false });
const guard = new RateLimitGuard(resilience);
const interceptor = new ResilienceInterceptor(resilience);
const request = { ip: '127.0.0.1', method: 'GET', headers: {}, socket: { remoteAddress: '127.0.0.1' } };
const reply = {
  headers: {},
  sent: false,
  header(name, value) {
    this.headers[name.toLowerCase()] = value;
    return this;
  },
};
const next = { handle: () => of(BODY) };

const median = (values) => values.toSorted((a, b) => a - b)[values.length >> 1];

for (const row of process.argv.length > 2 ? process.argv.slice(2) : Object.keys(rows)) {
  if (!(row in rows)) throw new Error(`no row ${row}; rows: ${Object.keys(rows).join(', ')}`);
  const context = new ExecutionContextHost([request, reply, undefined], BenchController, BenchController.prototype[row]);
  context.setType('http');
  const limited = row.startsWith('rl') || row === 'full' || row === 'full:no-timeout';
  const intercepted = !row.startsWith('rl');
  let refused = 0;
  const once = async () => {
    if (limited) {
      try {
        guard.canActivate(context);
      } catch {
        refused++;
        return;
      }
    }
    if (intercepted) await lastValueFrom(interceptor.intercept(context, next));
  };
  const perCall = [];
  // A turn ends between rows: a row without @Timeout does not inherit the async hooks of the one before.
  await new Promise((resolve) => setImmediate(resolve));
  for (let round = 0; round < ROUNDS; round++) {
    const before = process.cpuUsage();
    for (let call = 0; call < CALLS; call++) await once();
    const used = process.cpuUsage(before);
    perCall.push(((used.user + used.system) * 1000) / CALLS);
  }
  console.log(`${row.padEnd(16)} ${Math.min(...perCall).toFixed(0).padStart(6)} ns  (median ${median(perCall).toFixed(0)})${refused ? `  ${refused} refused` : ''}`);
}
await app.close();
