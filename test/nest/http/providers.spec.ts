// Decorated provider methods called while handling HTTP requests: wrapped once, keeping `this`;
// a controller's deadline bounds the provider calls it makes.
import { Controller, Get, Injectable, Param, Post } from '@nestjs/common';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fallback, FakeClock, getRemainingTime, ResilienceModule, Retry, Timeout } from 'nest-resilience';
import { createApp, driveClock, PLATFORMS, type TestApp } from './support/app.js';

const clock = new FakeClock();

@Injectable()
class Downstream {
  calls = 0;

  @Retry({ maxAttempts: 3, delay: 100, jitter: 'none' })
  @Fallback((_error: unknown, id: string) => `fallback ${id}`)
  async fetch(id: string): Promise<string> {
    this.calls++;
    throw new Error(`down ${id}`);
  }

  @Timeout('5s')
  async remaining(): Promise<number | undefined> {
    return getRemainingTime(clock);
  }
}

@Controller('providers')
class ProvidersController {
  constructor(private readonly downstream: Downstream) {}

  @Post('fetch/:id')
  fetch(@Param('id') id: string) {
    return this.downstream.fetch(id);
  }

  @Get('nested')
  @Timeout('1s')
  async nested() {
    clock.advance(400);
    return { remaining: await this.downstream.remaining() };
  }

  @Get('alone')
  async alone() {
    return { remaining: await this.downstream.remaining() };
  }
}

describe.each(PLATFORMS)('provider methods over %s', (platform) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createApp(platform, { imports: [ResilienceModule.forRoot({ clock })], controllers: [ProvidersController], providers: [Downstream] });
  });
  afterAll(() => t.close());

  it('retries then falls back, with the method’s own arguments and `this`', async () => {
    const downstream = t.app.get(Downstream);
    downstream.calls = 0;
    const response = await driveClock(clock, request(t.server).post('/providers/fetch/x'));
    expect(response.status).toBe(201);
    expect(response.text).toBe('fallback x');
    expect(downstream.calls).toBe(3);
  });

  it("a provider call made under a controller's @Timeout gets at most the time left", async () => {
    const nested = await request(t.server).get('/providers/nested').expect(200);
    expect(nested.body.remaining).toBe(600);
    const alone = await request(t.server).get('/providers/alone').expect(200);
    expect(alone.body.remaining).toBe(5_000);
  });
});
