// Deadline propagation between two real Nest applications on loopback, over Express and Fastify:
// app A (`@Timeout('300ms')`) calls app B with `fetch(url, withDeadline())`; B, with the module's
// `deadline` option, runs the whole request (guard, interceptor, handler, its async work) inside
// the caller's deadline. HTTP needs real time: bounds are generous and the waits short. Exact
// figures (the time left, the caps, the timers) are checked on a FakeClock further down.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AddressInfo } from 'node:net';
import {
  Body,
  Controller,
  GatewayTimeoutException,
  Get,
  Inject,
  Injectable,
  Post,
  UseGuards,
  UseInterceptors,
  type CallHandler,
  type CanActivate,
  type ExecutionContext,
  type ModuleMetadata,
  type NestInterceptor,
} from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { map, type Observable } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../lib/core/clock.js';
import { contextTrackingEnabled, getAbortSignal, getRemainingTime } from '../../lib/core/context.js';
import { InvalidOptionError } from '../../lib/core/errors.js';
import { withDeadline } from '../../lib/nest/deadline/deadline-headers.js';
import { DeadlineMiddleware } from '../../lib/nest/deadline/deadline.middleware.js';
import { Timeout } from '../../lib/nest/decorators/resilience.decorators.js';
import { ResilienceModule } from '../../lib/nest/resilience.module.js';
import type { ResilienceModuleOptions } from '../../lib/nest/resilience.options.js';
import { bootstrapError, gate, PLATFORMS, until, type Platform } from './http/support/app.js';

// Where AsyncLocalStorage rides on async hooks (Node 20, 22), our store is switched off when no
// call is in flight; from Node 24 on it is never switched off.
const ON_WHEN_IDLE = !('_propagate' in AsyncLocalStorage.prototype);
const DOWNSTREAM = Symbol('downstream');
const CLOCK = Symbol('clock');

/** What B's handlers saw, for the cases where the answer cannot carry it (an aborted request). */
const probe = {
  handled: 0,
  slowEntered: 0,
  held: gate(),
  heldEntered: 0,
  heldAbort: [] as string[],
  slowAbort: [] as string[],
};

type Observed = Record<string, unknown> & { guard?: number; interceptorBefore?: number };

@Injectable()
class RecordingGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    context.switchToHttp().getRequest<Observed>().guard = getRemainingTime();
    return true;
  }
}

@Injectable()
class RecordingInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const request = context.switchToHttp().getRequest<Observed>();
    request.interceptorBefore = getRemainingTime();
    return next.handle().pipe(map((body) => ({ ...(body as object), guard: request.guard, interceptorBefore: request.interceptorBefore, interceptorAfter: getRemainingTime() })));
  }
}

function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function abortOf(signal: AbortSignal): Promise<string> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve((signal.reason as Error).name), { once: true }));
}

@Controller('b')
@UseGuards(RecordingGuard)
@UseInterceptors(RecordingInterceptor)
class DownstreamController {
  @Get('budget')
  async budget(): Promise<object> {
    probe.handled++;
    const before = getRemainingTime();
    await nextMacrotask();
    return { before, after: getRemainingTime(), signal: getAbortSignal() instanceof AbortSignal };
  }

  @Post('echo')
  echo(@Body() body: unknown): object {
    return { body, remaining: getRemainingTime() };
  }

  @Get('slow')
  @Timeout('10s')
  async slow(): Promise<object> {
    probe.slowEntered++;
    probe.slowAbort.push(await abortOf(getAbortSignal()!));
    return { late: true };
  }

  /** No `@Timeout`: only the request's own deadline can fire its signal. */
  @Get('held')
  async held(): Promise<object> {
    probe.heldEntered++;
    const signal = getAbortSignal()!;
    const reason = await Promise.race([abortOf(signal), probe.held.promise.then(() => 'released')]);
    probe.heldAbort.push(reason);
    return { reason };
  }
}

@Controller('a')
class CallerController {
  constructor(@Inject(DOWNSTREAM) private readonly downstream: { url: string }) {}

  @Get('budget')
  @Timeout('300ms')
  async budget(): Promise<object> {
    const sent = getRemainingTime()!;
    const start = performance.now();
    const response = await fetch(`${this.downstream.url}/b/budget`, withDeadline());
    const b = await response.json();
    return { sent, trip: performance.now() - start, status: response.status, b };
  }

  @Get('slow')
  @Timeout('300ms')
  async slow(): Promise<object> {
    const response = await fetch(`${this.downstream.url}/b/slow`, withDeadline());
    // B's deadline is A's, less the trip: its 504 may come back just before A's own timeout fires.
    if (response.status === 504) throw new GatewayTimeoutException('B ran out of time');
    return { status: response.status };
  }
}

interface Served {
  readonly url: string;
  close(): Promise<void>;
}

// Both applications and the test share one process, hence undici's pool of keep-alive
// connections: `forceCloseConnections` lets `close()` end them instead of waiting for them to idle out.
// Fastify gets it too: Nest 11's FastifyAdapter ignores the application option, and Fastify's default
// ('idle') leaves a connection accepted before any request was read, which Node does not count as idle
// and keeps until its headersTimeout (60 s).
async function serve(platform: Platform, metadata: ModuleMetadata): Promise<Served> {
  const moduleRef = await Test.createTestingModule(metadata).compile();
  const options = { logger: false as const, forceCloseConnections: true };
  const app = platform === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter({ forceCloseConnections: true }), options) : moduleRef.createNestApplication(options);
  await app.listen(0, '127.0.0.1');
  const { port } = (app.getHttpServer() as Server).address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return { url: `http://127.0.0.1:${port}`, close: () => (closed ??= app.close()) };
}

function downstreamApp(platform: Platform, options: ResilienceModuleOptions): Promise<Served> {
  return serve(platform, { imports: [ResilienceModule.forRoot(options)], controllers: [DownstreamController], providers: [RecordingGuard, RecordingInterceptor] });
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown>; ms: number }> {
  const start = performance.now();
  const response = await fetch(url, { headers });
  const body = (await response.json()) as Record<string, unknown>;
  return { status: response.status, body, ms: performance.now() - start };
}

describe.each(PLATFORMS)('deadline propagation between two applications over %s', (platform) => {
  let b: Served;
  let bGrpc: Served;
  let a: Served;

  beforeAll(async () => {
    b = await downstreamApp(platform, { deadline: { maxDeadline: '2s' } });
    bGrpc = await downstreamApp(platform, { deadline: { header: 'grpc-timeout', format: 'grpc-timeout' } });
    a = await serve(platform, { imports: [ResilienceModule.forRoot({})], controllers: [CallerController], providers: [{ provide: DOWNSTREAM, useValue: { url: b.url } }] });
  });

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), bGrpc?.close()]);
  });

  it('B sees what is left of A’s 300 ms, in its guard, interceptor, handler and the handler’s async work', async () => {
    const { status, body } = await get(`${a.url}/a/budget`);
    expect(status).toBe(200);
    const sent = body.sent as number;
    const seen = body.b as Record<string, number | boolean>;
    expect(body.status).toBe(200);
    expect(sent).toBeGreaterThan(150);
    expect(sent).toBeLessThanOrEqual(300);
    // Each reading is below the previous one and within the time the hops took (generously).
    const readings = [seen.guard, seen.interceptorBefore, seen.before, seen.after, seen.interceptorAfter] as number[];
    for (const reading of readings) expect(typeof reading).toBe('number');
    // What B reads is what A sent, less at most the round trip A measured (whatever the load).
    expect(readings[0]).toBeLessThanOrEqual(sent);
    expect(readings[0]).toBeGreaterThanOrEqual(sent - (body.trip as number) - 1);
    for (let index = 1; index < readings.length; index++) expect(readings[index]).toBeLessThanOrEqual(readings[index - 1]!);
    expect(seen.signal).toBe(true);
  });

  it('B’s own @Timeout(\'10s\') is cut to the incoming deadline: a slow handler answers 504 at it', async () => {
    const entered = probe.slowEntered;
    const { status, body, ms } = await get(`${b.url}/b/slow`, { 'x-request-deadline': '200' });
    expect(status).toBe(504);
    expect(body).toMatchObject({ statusCode: 504, error: 'Gateway Timeout' });
    expect(probe.slowEntered).toBe(entered + 1);
    expect(probe.slowAbort.at(-1)).toBe('TimeoutExceededError');
    expect(ms).toBeGreaterThanOrEqual(190);
    expect(ms).toBeLessThan(2_000);
  });

  it('through A: A answers 504 at its 300 ms and B’s slow handler is stopped too', async () => {
    const aborted = probe.slowAbort.length;
    const { status, ms } = await get(`${a.url}/a/slow`);
    expect(status).toBe(504);
    expect(ms).toBeLessThan(2_000);
    await until(() => probe.slowAbort.length === aborted + 1);
    // B's deadline and A's cancelled fetch race: either way B's work is told to stop.
    expect(['TimeoutExceededError', 'OperationAbortedError']).toContain(probe.slowAbort.at(-1));
  });

  it('an incoming deadline already passed is answered 504 at once, without running guard or handler', async () => {
    const handled = probe.handled;
    for (const headers of [{ 'x-request-deadline': '0' }]) {
      const { status, body, ms } = await get(`${b.url}/b/budget`, headers);
      expect(status).toBe(504);
      expect(body).toMatchObject({ statusCode: 504, error: 'Gateway Timeout' });
      expect(ms).toBeLessThan(500);
    }
    const expired = await get(`${bGrpc.url}/b/budget`, { 'grpc-timeout': '0n' });
    expect(expired.status).toBe(504);
    expect(probe.handled).toBe(handled);
  });

  it('reads gRPC’s grpc-timeout when told to', async () => {
    const { status, body, ms } = await get(`${bGrpc.url}/b/budget`, { 'grpc-timeout': '1S' });
    expect(status).toBe(200);
    expect(body.guard).toBeLessThanOrEqual(1_000);
    expect(body.guard).toBeGreaterThanOrEqual(1_000 - ms);
    // The default header means nothing to this application.
    expect((await get(`${bGrpc.url}/b/budget`, { 'x-request-deadline': '100' })).body.guard).toBeUndefined();
  });

  it('ignores a malformed header: the request runs without a deadline', async () => {
    for (const value of ['soon', '-5', '1e3', '100ms']) {
      const { status, body } = await get(`${b.url}/b/budget`, { 'x-request-deadline': value });
      expect(status).toBe(200);
      expect(body.signal).toBe(false);
      expect(body.before).toBeUndefined();
      expect(body.guard).toBeUndefined();
    }
  });

  it('caps a deadline longer than maxDeadline', async () => {
    const { body, ms } = await get(`${b.url}/b/budget`, { 'x-request-deadline': '600000' });
    expect(body.guard).toBeLessThanOrEqual(2_000);
    expect(body.guard).toBeGreaterThanOrEqual(2_000 - ms);
  });

  it('keeps the deadline through body parsing (POST)', async () => {
    const start = performance.now();
    const response = await fetch(`${b.url}/b/echo`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-deadline': '1000' }, body: JSON.stringify({ n: 1 }) });
    const body = (await response.json()) as Record<string, unknown>;
    expect(response.status).toBe(201);
    expect(body.body).toEqual({ n: 1 });
    expect(body.remaining).toBeLessThanOrEqual(1_000);
    expect(body.remaining).toBeGreaterThanOrEqual(1_000 - (performance.now() - start));
  });

  it('a client that hangs up aborts the request’s signal', async () => {
    probe.held = gate();
    const entered = probe.heldEntered;
    const aborted = probe.heldAbort.length;
    const client = new AbortController();
    const pending = fetch(`${b.url}/b/held`, { headers: { 'x-request-deadline': '1500' }, signal: client.signal }).catch((error: unknown) => error);
    await until(() => probe.heldEntered === entered + 1);
    client.abort();
    await pending;
    await until(() => probe.heldAbort.length === aborted + 1);
    expect(probe.heldAbort.at(-1)).toBe('OperationAbortedError');
  });

  it('leaves every request’s context: tracking is off again once the requests end', async () => {
    await Promise.all([get(`${a.url}/a/budget`), get(`${b.url}/b/budget`, { 'x-request-deadline': '0' }), get(`${b.url}/b/budget`, { 'x-request-deadline': '900' })]);
    // A context left open would keep it on for good: `until` would time out.
    await until(() => contextTrackingEnabled() === ON_WHEN_IDLE);
    expect(contextTrackingEnabled()).toBe(ON_WHEN_IDLE);
  });
});

@Controller('b')
class ClockedController {
  constructor(@Inject(CLOCK) private readonly clock: FakeClock) {}

  @Get('budget')
  budget(): object {
    return { remaining: getRemainingTime(this.clock) ?? null };
  }

  @Get('held')
  async held(): Promise<object> {
    probe.heldEntered++;
    const signal = getAbortSignal()!;
    const reason = await Promise.race([abortOf(signal), probe.held.promise.then(() => 'released')]);
    return { reason, timeoutMs: (signal.reason as { timeoutMs?: number } | undefined)?.timeoutMs ?? null };
  }
}

describe.each(PLATFORMS)('the request deadline on a FakeClock over %s', (platform) => {
  const clock = new FakeClock(5_000);
  let b: Served;
  let grpc: Served;
  let lenient: Served;

  function clocked(options: ResilienceModuleOptions): Promise<Served> {
    return serve(platform, { imports: [ResilienceModule.forRoot({ clock, ...options })], controllers: [ClockedController], providers: [{ provide: CLOCK, useValue: clock }] });
  }

  beforeAll(async () => {
    b = await clocked({ deadline: { maxDeadline: '2s' } });
    grpc = await clocked({ deadline: { header: 'grpc-timeout', format: 'grpc-timeout' } });
    lenient = await clocked({ deadline: { onExpired: 'ignore' } });
  });

  afterAll(async () => {
    await Promise.all([b?.close(), grpc?.close(), lenient?.close()]);
  });

  it('the handler reads exactly the time the caller allowed, capped by maxDeadline; no timer is left', async () => {
    expect((await get(`${b.url}/b/budget`, { 'x-request-deadline': '500' })).body).toEqual({ remaining: 500 });
    expect((await get(`${b.url}/b/budget`, { 'x-request-deadline': '600000' })).body).toEqual({ remaining: 2_000 });
    expect((await get(`${b.url}/b/budget`, { 'x-request-deadline': '12.5' })).body).toEqual({ remaining: 12.5 });
    expect((await get(`${grpc.url}/b/budget`, { 'grpc-timeout': '2S' })).body).toEqual({ remaining: 2_000 });
    expect((await get(`${grpc.url}/b/budget`, { 'grpc-timeout': '1500u' })).body).toEqual({ remaining: 1.5 });
    expect((await get(`${b.url}/b/budget`)).body).toEqual({ remaining: null });
    await until(() => clock.pendingTimers === 0);
  });

  it('the request’s signal fires at the deadline even without @Timeout', async () => {
    probe.held = gate();
    const entered = probe.heldEntered;
    const pending = get(`${b.url}/b/held`, { 'x-request-deadline': '300' });
    await until(() => probe.heldEntered === entered + 1);
    clock.advance(299);
    await nextMacrotask();
    clock.advance(1);
    const { status, body } = await pending;
    expect(status).toBe(200);
    expect(body).toEqual({ reason: 'TimeoutExceededError', timeoutMs: 300 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('with onExpired: \'ignore\', an expired deadline is treated as absent', async () => {
    expect(await get(`${lenient.url}/b/budget`, { 'x-request-deadline': '0' })).toMatchObject({ status: 200, body: { remaining: null } });
    expect(await get(`${b.url}/b/budget`, { 'x-request-deadline': '0' })).toMatchObject({ status: 504 });
  });

  it('a request in flight at shutdown is aborted like any other', async () => {
    const doomed = await clocked({ deadline: {} });
    probe.held = gate();
    const entered = probe.heldEntered;
    const pending = get(`${doomed.url}/b/held`, { 'x-request-deadline': '60000' });
    await until(() => probe.heldEntered === entered + 1);
    const closing = doomed.close();
    const { body } = await pending;
    await closing;
    expect(body).toMatchObject({ reason: 'OperationAbortedError' });
    await until(() => clock.pendingTimers === 0);
  });
});

describe('deadline options at bootstrap', () => {
  it.each([
    [{ format: 'seconds' }, 'deadline.format'],
    [{ maxDeadline: 0 }, 'deadline.maxDeadline'],
    [{ header: 'x deadline' }, 'deadline.header'],
    [{ onExpired: 'retry' }, 'deadline.onExpired'],
    [{ cap: '1s' }, 'deadline.cap'],
  ])('%j fails the bootstrap naming %s', async (deadline, option) => {
    const error = await bootstrapError('express', { imports: [ResilienceModule.forRoot({ deadline } as never)], controllers: [ClockedController], providers: [{ provide: CLOCK, useValue: new FakeClock() }] });
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).option).toBe(option);
    expect(error.message).toContain('ResilienceModule.forRoot');
  });
});

// An earlier async middleware may still be at work when the client hangs up: the response's
// 'close' has fired before the deadline middleware runs, so it must not enter a context it could
// never leave. A plain Node server, so that the response is closed exactly when the middleware runs.
describe('the deadline middleware on a response already closed', () => {
  const middleware = new DeadlineMiddleware({ deadline: {} });

  async function runLate(prepare: (response: ServerResponse, client: AbortController) => Promise<void>): Promise<{ closed: boolean; remaining: number | undefined }> {
    const client = new AbortController();
    let done!: (seen: { closed: boolean; remaining: number | undefined }) => void;
    const seen = new Promise<{ closed: boolean; remaining: number | undefined }>((resolve) => (done = resolve));
    const server = createServer((request: IncomingMessage, response: ServerResponse) => {
      void prepare(response, client).then(() => {
        const closed = response.destroyed || response.writableFinished;
        middleware.use(request, response, () => done({ closed, remaining: getRemainingTime() }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const answered = fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-request-deadline': '5000', connection: 'close' }, signal: client.signal })
      .then((response) => response.text())
      .catch(() => undefined);
    try {
      return await seen;
    } finally {
      await answered;
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }

  it.each([
    ['the client hung up', async (response: ServerResponse, client: AbortController) => {
      const closed = new Promise((resolve) => response.once('close', resolve));
      client.abort();
      await closed;
    }],
    ['the response was sent', async (response: ServerResponse) => {
      await new Promise<void>((resolve) => response.end('early', () => resolve()));
    }],
  ])('%s: next() runs outside any context and nothing stays in flight', async (_case, prepare) => {
    const { closed, remaining } = await runLate(prepare);
    expect(closed).toBe(true);
    expect(remaining).toBeUndefined();
    await until(() => contextTrackingEnabled() === ON_WHEN_IDLE);
    expect(contextTrackingEnabled()).toBe(ON_WHEN_IDLE);
  });
});
