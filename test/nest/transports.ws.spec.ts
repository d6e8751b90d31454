import type { AddressInfo } from 'node:net';
import { type INestApplication } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { MessageBody, SubscribeMessage, WebSocketGateway, WsException, type OnGatewayConnection } from '@nestjs/websockets';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { CircuitBreaker, FakeClock, RateLimit, RateLimiterRegistry, ResilienceModule } from 'nest-resilience';

// A socket.io gateway (@nestjs/platform-socket.io) with @RateLimit on @SubscribeMessage handlers.
// N2: many messages on one socket run at most `limit` times; every refused message answers with
// the WsException payload on the 'exception' event. At connection time nothing is limited (Nest
// runs no guard on a handshake); the budget is per client address, so a new socket from the
// same address does not get a new budget.
//
// `socket.io-client` is not installed: the client below speaks the two small protocols over `ws`
// (a dependency of socket.io): Engine.IO v4 packets ('0' open, '2'/'3' ping/pong, '4' message)
// carrying Socket.IO v5 packets ('0' connect, '2' event, '3' ack, '4' connect error).

class SocketIoTestClient {
  readonly events: Array<{ event: string; data: unknown }> = [];
  private readonly acks = new Map<number, (value: unknown) => void>();
  private nextAck = 1;
  private readonly listeners = new Set<() => void>();

  private constructor(private readonly socket: WebSocket) {}

  /** @param localAddress the client's own address (any of 127.0.0.0/8 on Linux loopback). */
  static connect(port: number, localAddress = '127.0.0.1'): Promise<SocketIoTestClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, { localAddress });
      const client = new SocketIoTestClient(socket);
      socket.on('error', reject);
      socket.on('message', (raw) => {
        const packet = String(raw);
        if (packet.startsWith('0')) socket.send('40');
        else if (packet === '2') socket.send('3');
        else if (packet.startsWith('40')) resolve(client);
        else if (packet.startsWith('44')) reject(new Error(`connect error: ${packet.slice(2)}`));
        else if (packet.startsWith('42')) client.onEvent(packet.slice(2));
        else if (packet.startsWith('43')) client.onAck(packet.slice(2));
      });
    });
  }

  emit(event: string, data: unknown): void {
    this.socket.send(`42${JSON.stringify([event, data])}`);
  }

  /** Emits with an acknowledgement: resolves with what the handler returned. */
  emitWithAck(event: string, data: unknown): Promise<unknown> {
    const id = this.nextAck++;
    return new Promise((resolve) => {
      this.acks.set(id, resolve);
      this.socket.send(`42${id}${JSON.stringify([event, data])}`);
    });
  }

  /** One message with an acknowledgement: its ack, or the 'exception' it caused, whichever comes first. */
  async answer(event: string, data: unknown): Promise<{ ack: unknown } | { exception: unknown }> {
    const seen = this.received('exception').length;
    let result: { ack: unknown } | { exception: unknown } | undefined;
    void this.emitWithAck(event, data).then((ack) => (result ??= { ack }));
    await this.until(() => result !== undefined || this.received('exception').length > seen);
    return result ?? { exception: this.received('exception')[seen] };
  }

  received(event: string): unknown[] {
    return this.events.filter((entry) => entry.event === event).map((entry) => entry.data);
  }

  /** Resolves once `predicate` holds (checked on every packet), or rejects after `ms`. */
  until(predicate: () => boolean, ms = 2_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`condition not met within ${ms} ms; events: ${JSON.stringify(this.events)}`));
      }, ms);
      this.listeners.add(check);
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.readyState === WebSocket.CLOSED) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.send('41');
      this.socket.close();
    });
  }

  private onEvent(body: string): void {
    const [event, data] = JSON.parse(body.replace(/^\d+/, '')) as [string, unknown];
    this.events.push({ event, data });
    this.notify();
  }

  private onAck(body: string): void {
    const id = Number(/^\d+/.exec(body)![0]);
    const [value] = JSON.parse(body.slice(String(id).length)) as [unknown];
    this.acks.get(id)?.(value);
    this.acks.delete(id);
    // After the ack's own promise callbacks have run.
    setImmediate(() => this.notify());
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }
}

const state = { connections: 0, echoes: 0, flaky: 0 };

@WebSocketGateway()
class ChatGateway implements OnGatewayConnection {
  handleConnection(): void {
    state.connections++;
  }

  // Default key: the client's address (socket.io's handshake address, normalised).
  @SubscribeMessage('echo')
  @RateLimit({ limit: 5, window: '1m' })
  echo(@MessageBody() data: unknown): unknown {
    state.echoes++;
    return data;
  }

  @SubscribeMessage('flaky')
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '30s' })
  flaky(): never {
    state.flaky++;
    throw new WsException('broken');
  }
}

describe.each(['express', 'fastify'] as const)('WebSocket gateway (socket.io on %s)', (platform) => {
  const clock = new FakeClock();
  let app: INestApplication;
  let port: number;
  const clients: SocketIoTestClient[] = [];

  async function connect(localAddress?: string): Promise<SocketIoTestClient> {
    const client = await SocketIoTestClient.connect(port, localAddress);
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    Object.assign(state, { connections: 0, echoes: 0, flaky: 0 });
    const moduleRef = await Test.createTestingModule({
      imports: [ResilienceModule.forRoot({ clock })],
      providers: [ChatGateway],
    }).compile();
    app = platform === 'fastify' ? moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter()) : moduleRef.createNestApplication();
    app.useLogger(false);
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
  });

  let closed = false;
  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    await Promise.all(clients.map((client) => client.close()));
    await app.close();
  }

  afterAll(close);

  it('many messages on one socket: executions ≤ limit; each refused message gets the 429 WsException payload', async () => {
    const client = await connect();
    const acks: unknown[] = [];
    for (let index = 0; index < 20; index++) void client.emitWithAck('echo', { n: index }).then((value) => acks.push(value));
    await client.until(() => acks.length + client.received('exception').length === 20);
    expect(state.echoes).toBe(5);
    expect(acks).toHaveLength(5);
    const refusals = client.received('exception');
    expect(refusals).toHaveLength(15);
    for (const payload of refusals) {
      expect(payload).toEqual({ status: 429, error: 'Too Many Requests', message: expect.stringContaining('ChatGateway.echo'), retryAfter: expect.any(Number) });
      expect((payload as { retryAfter: number }).retryAfter).toBeGreaterThanOrEqual(1);
    }
    expect(app.get(RateLimiterRegistry).get('ChatGateway.echo').describe()).toMatchObject({ admitted: 5, rejected: 15 });
  });

  it('connecting is not limited, but a new socket from the same address shares the address\'s budget', async () => {
    const before = state.connections;
    const second = await connect();
    const third = await connect();
    expect(state.connections).toBe(before + 2);
    second.emit('echo', { again: true });
    third.emit('echo', { again: true });
    await second.until(() => second.received('exception').length === 1);
    await third.until(() => third.received('exception').length === 1);
    expect(second.received('exception')[0]).toMatchObject({ status: 429 });
    expect(state.echoes).toBe(5);
  });

  it('another client address has a budget of its own (the key is the socket\'s remote address)', async () => {
    const other = await connect('127.0.0.2');
    await expect(other.answer('echo', 'from .2')).resolves.toEqual({ ack: 'from .2' });
    expect(state.echoes).toBe(6);
    expect(other.received('exception')).toEqual([]);
  });

  it('the gateway is handled like a controller: its handlers are not wrapped on the instance', () => {
    expect(Object.hasOwn(app.get(ChatGateway), 'echo')).toBe(false);
    expect(Object.hasOwn(app.get(ChatGateway), 'flaky')).toBe(false);
  });

  it('the budget refills with the window (fake clock)', async () => {
    const client = await connect();
    clock.advance(120_000);
    await expect(client.answer('echo', 'back')).resolves.toEqual({ ack: 'back' });
    expect(state.echoes).toBe(7);
  });

  it('@CircuitBreaker through the interceptor: the handler\'s own WsException, then the 503 payload', async () => {
    const client = await connect();
    client.emit('flaky', {});
    await client.until(() => client.received('exception').length === 1);
    expect(client.received('exception')[0]).toMatchObject({ status: 'error', message: 'broken' });
    client.emit('flaky', {});
    await client.until(() => client.received('exception').length === 2);
    expect(client.received('exception')[1]).toEqual({ status: 503, error: 'Service Unavailable', message: expect.any(String), retryAfter: 30 });
    expect(state.flaky).toBe(1);
  });

  it('closing the application leaves no timer of ours', async () => {
    await close();
    expect(clock.pendingTimers).toBe(0);
  });
});
