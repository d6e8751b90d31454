import { Controller, Get, Injectable, Module, Post } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { CircuitBreaker, CircuitBreakerRegistry, Fallback, RateLimit, ResilienceModule, Retry, Timeout } from 'nest-resilience';

@Injectable()
class Downstream {
  calls = 0;
  @Retry({ maxAttempts: 3, delay: 1 })
  @Fallback((error: unknown, id: string) => `fallback ${id}`)
  async fetch(id: string): Promise<string> {
    this.calls++;
    throw new Error('down ' + id);
  }
}

@Controller('smoke')
class SmokeController {
  constructor(private readonly downstream: Downstream) {}
  @Get('limited')
  @RateLimit({ limit: 2, window: '1m' })
  limited() {
    return { ok: true };
  }
  @Get('breaker')
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
  @Timeout('1s')
  breaker() {
    throw new Error('boom');
  }
  @Post('provider')
  provider() {
    return this.downstream.fetch('x');
  }
}

@Module({ imports: [ResilienceModule.forRoot({ isGlobal: true })], controllers: [SmokeController], providers: [Downstream] })
class SmokeModule {}

describe('smoke', () => {
  it('works through Express', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [SmokeModule] }).compile();
    const app = moduleRef.createNestApplication();
    await app.init();
    const server = app.getHttpServer();
    await request(server).get('/smoke/limited').expect(200);
    const second = await request(server).get('/smoke/limited').expect(200);
    console.log(second.headers);
    const third = await request(server).get('/smoke/limited').expect(429);
    console.log(third.headers, third.body);
    await request(server).get('/smoke/breaker').expect(500);
    const open = await request(server).get('/smoke/breaker').expect(503);
    console.log(open.headers['retry-after'], open.body);
    const provider = await request(server).post('/smoke/provider').expect(201);
    expect(provider.text).toBe('fallback x');
    expect(app.get(Downstream).calls).toBe(3);
    console.log(app.get(CircuitBreakerRegistry).list());
    await app.close();
  });
});
