import { Controller, Get, Inject, Injectable, type INestApplication } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock, ResilienceModule, Timeout, getAbortSignal, getRemainingTime, isTimeoutExceededError } from 'nest-resilience';

// A controller with @Timeout('200ms') calls a provider method with @Timeout('10s'): the provider
// gets at most what is left of the request's deadline, both in time and in its AbortSignal.

const CLOCK = Symbol('clock');
const PROBE = Symbol('probe');

function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => (resolve = done));
  return { promise, resolve };
}

/** Lets a test stop a handler midway, move the clock, and let it go on. */
class Probe {
  entered = deferred();
  release = deferred();
  signal: AbortSignal | undefined;
  reset(): void {
    this.entered = deferred();
    this.release = deferred();
    this.signal = undefined;
  }
}

@Injectable()
class Downstream {
  constructor(
    @Inject(CLOCK) private readonly clock: FakeClock,
    @Inject(PROBE) private readonly probe: Probe,
  ) {}

  @Timeout('10s')
  async budget(): Promise<number | undefined> {
    return getRemainingTime(this.clock);
  }

  @Timeout('10s')
  async hang(): Promise<string> {
    const signal = getAbortSignal()!;
    this.probe.signal = signal;
    this.probe.entered.resolve();
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    return 'stopped';
  }
}

@Controller('deadline')
class DeadlineController {
  constructor(
    private readonly downstream: Downstream,
    @Inject(PROBE) private readonly probe: Probe,
  ) {}

  @Get('budget')
  @Timeout('200ms')
  async budget(): Promise<{ remaining: number | undefined }> {
    this.probe.entered.resolve();
    await this.probe.release.promise;
    return { remaining: await this.downstream.budget() };
  }

  @Get('hang')
  @Timeout('200ms')
  async hang(): Promise<{ result: string }> {
    return { result: await this.downstream.hang() };
  }
}

describe.each(['express', 'fastify'] as const)('deadline propagation from a controller into a provider (%s)', (platform) => {
  const clock = new FakeClock();
  const probe = new Probe();
  let app: INestApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [ResilienceModule.forRoot({ clock })],
      controllers: [DeadlineController],
      providers: [Downstream, { provide: CLOCK, useValue: clock }, { provide: PROBE, useValue: probe }],
    }).compile();
    if (platform === 'fastify') {
      const fastify = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter());
      await fastify.init();
      await fastify.getHttpAdapter().getInstance().ready();
      app = fastify;
    } else {
      app = moduleRef.createNestApplication();
      await app.init();
    }
  });

  let closed = false;
  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    await app.close();
  }

  afterAll(close);

  it('the provider\'s 10 s timeout is cut to what is left of the request\'s 200 ms', async () => {
    probe.reset();
    const response = request(app.getHttpServer()).get('/deadline/budget').then((res) => res);
    await probe.entered.promise;
    clock.advance(150);
    probe.release.resolve();
    const res = await response;
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ remaining: 50 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('outside a request the provider has its own 10 s', async () => {
    await expect(app.get(Downstream).budget()).resolves.toBe(10_000);
  });

  it('the request\'s deadline fires the provider\'s AbortSignal and answers 504', async () => {
    probe.reset();
    const response = request(app.getHttpServer()).get('/deadline/hang').then((res) => res);
    await probe.entered.promise;
    expect(probe.signal!.aborted).toBe(false);
    clock.advance(199);
    expect(probe.signal!.aborted).toBe(false);
    clock.advance(1);
    expect(probe.signal!.aborted).toBe(true);
    expect(isTimeoutExceededError(probe.signal!.reason)).toBe(true);
    expect((probe.signal!.reason as { timeoutMs: number }).timeoutMs).toBe(200);
    const res = await response;
    expect(res.status).toBe(504);
    expect(res.body).toMatchObject({ statusCode: 504, error: 'Gateway Timeout' });
    expect(clock.pendingTimers).toBe(0);
  });

  it('closing the application leaves no timer of ours', async () => {
    await close();
    expect(clock.pendingTimers).toBe(0);
  });
});
