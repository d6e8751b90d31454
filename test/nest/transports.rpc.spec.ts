import type { AddressInfo, Server } from 'node:net';
import { Controller, type INestMicroservice } from '@nestjs/common';
import { ClientProxyFactory, MessagePattern, Payload, RpcException, Transport, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { firstValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CircuitBreaker, FakeClock, RateLimit, RateLimiterRegistry, ResilienceModule, Timeout, getAbortSignal } from 'nest-resilience';

// Microservice RPC over TCP on a free loopback port: @MessagePattern handlers with @RateLimit,
// @CircuitBreaker and @Timeout; rejections reach the client as the RpcException payload
// { status, error, message, retryAfter? }.

function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => (resolve = done));
  return { promise, resolve };
}

const executions = { limited: 0, tenant: 0, breaker: 0, slow: 0 };
let slowEntered = deferred();
let slowSignal: AbortSignal | undefined;

@Controller()
class RpcController {
  @MessagePattern('limited')
  @RateLimit({ limit: 3, window: '1m', key: 'global' })
  limited(@Payload() value: number): number {
    executions.limited++;
    return value * 2;
  }

  @MessagePattern('tenant')
  @RateLimit({ limit: 2, window: '1m', key: (context) => context.switchToRpc().getData<{ tenant: string }>().tenant })
  tenant(@Payload() data: { tenant: string }): string {
    executions.tenant++;
    return data.tenant;
  }

  @MessagePattern('breaker')
  @CircuitBreaker({ consecutiveFailures: 2, openDuration: '30s' })
  breaker(): never {
    executions.breaker++;
    throw new RpcException({ status: 'error', message: 'downstream failed' });
  }

  @MessagePattern('slow')
  @Timeout('1s')
  async slow(): Promise<string> {
    executions.slow++;
    const signal = getAbortSignal()!;
    slowSignal = signal;
    slowEntered.resolve();
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    return 'too late';
  }
}

/** What the client observable fails with: the payload the server's RpcException carried. */
function failureOf(client: ClientProxy, pattern: string, data: unknown): Promise<unknown> {
  return firstValueFrom(client.send(pattern, data)).then(
    (value: unknown) => ({ resolved: value }),
    (error: unknown) => error,
  );
}

describe('RPC (TCP microservice)', () => {
  const clock = new FakeClock();
  let microservice: INestMicroservice;
  let client: ClientProxy;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [ResilienceModule.forRoot({ clock })],
      controllers: [RpcController],
    }).compile();
    microservice = moduleRef.createNestMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: 0 } });
    microservice.useLogger(false);
    await microservice.listen();
    const { port } = microservice.unwrap<Server>().address() as AddressInfo;
    client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port } });
    await client.connect();
  });

  let closed = false;
  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    await client.close();
    await microservice.close();
  }

  afterAll(close);

  it('@RateLimit(key global): of 10 concurrent messages exactly the limit run; the rest get the 429 payload', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, (_, index) => failureOf(client, 'limited', index)));
    const served = results.filter((result) => typeof result === 'object' && result !== null && 'resolved' in result);
    const refused = results.filter((result) => !(typeof result === 'object' && result !== null && 'resolved' in result));
    expect(served).toHaveLength(3);
    expect(executions.limited).toBe(3);
    expect(refused).toHaveLength(7);
    for (const payload of refused) {
      expect(payload).toEqual({ status: 429, error: 'Too Many Requests', message: expect.stringContaining('RpcController.limited'), retryAfter: expect.any(Number) });
      const retryAfter = (payload as { retryAfter: number }).retryAfter;
      expect(Number.isInteger(retryAfter) && retryAfter >= 1).toBe(true);
    }
    expect(microservice.get(RateLimiterRegistry).get('RpcController.limited').describe()).toMatchObject({ admitted: 3, rejected: 7 });
  });

  it('@RateLimit(key function of the message): each tenant has its own budget', async () => {
    expect(await failureOf(client, 'tenant', { tenant: 'a' })).toEqual({ resolved: 'a' });
    expect(await failureOf(client, 'tenant', { tenant: 'a' })).toEqual({ resolved: 'a' });
    expect(await failureOf(client, 'tenant', { tenant: 'a' })).toMatchObject({ status: 429, error: 'Too Many Requests' });
    expect(await failureOf(client, 'tenant', { tenant: 'b' })).toEqual({ resolved: 'b' });
    expect(executions.tenant).toBe(3);
  });

  it('@CircuitBreaker: the handler\'s own errors pass through; once open, the 503 payload with retryAfter, without running it', async () => {
    const failure = { status: 'error', message: 'downstream failed' };
    expect(await failureOf(client, 'breaker', {})).toEqual(failure);
    expect(await failureOf(client, 'breaker', {})).toEqual(failure);
    const open = await failureOf(client, 'breaker', {});
    expect(open).toEqual({ status: 503, error: 'Service Unavailable', message: expect.any(String), retryAfter: 30 });
    expect(executions.breaker).toBe(2);
    clock.advance(30_000);
    expect(await failureOf(client, 'breaker', {})).toEqual(failure);
    expect(executions.breaker).toBe(3);
  });

  it('@Timeout: the 504 payload at the deadline, and the handler\'s AbortSignal fires', async () => {
    slowEntered = deferred();
    const pending = failureOf(client, 'slow', {});
    await slowEntered.promise;
    clock.advance(999);
    expect(slowSignal!.aborted).toBe(false);
    clock.advance(1);
    expect(slowSignal!.aborted).toBe(true);
    expect(await pending).toEqual({ status: 504, error: 'Gateway Timeout', message: expect.stringContaining('1000 ms') });
    expect(executions.slow).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('closing the microservice leaves no timer of ours', async () => {
    await close();
    expect(clock.pendingTimers).toBe(0);
  });
});
