// The adaptive bulkhead and the priority-aware queue inside real Nest applications: a provider
// method whose limit follows the latency it measures on the module's fake clock, and HTTP routes
// (Express and Fastify) where a high-priority request displaces a low-priority one from a full queue.
import { Controller, Get, Injectable } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AdaptiveBulkheadPolicy,
  Bulkhead,
  BulkheadPolicy,
  BulkheadRegistry,
  FakeClock,
  flushMicrotasks,
  Priority,
  ResilienceModule,
  type BulkheadLimitChangeEvent,
  type BulkheadSettings,
} from 'nest-resilience';
import { createApp, PLATFORMS, type TestApp } from './http/support/app.js';

interface Gate {
  readonly promise: Promise<void>;
  open(): void;
}

function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe('@Bulkhead({ adaptive }) on a provider method', () => {
  const opened: TestingModule[] = [];
  afterEach(async () => {
    while (opened.length > 0) await opened.pop()!.close();
  });

  it('builds an AdaptiveBulkheadPolicy whose limit rises while calls are fast and falls when their latency grows', async () => {
    const clock = new FakeClock();

    @Injectable()
    class InventoryClient {
      /** Milliseconds a call takes, on the module's clock. */
      latency = 10;

      @Bulkhead({ adaptive: { algorithm: 'aimd', initialLimit: 2, maxLimit: 30, probeInterval: 0 }, maxQueue: 100 })
      async stock(sku: string): Promise<string> {
        await new Promise<void>((resolve) => clock.setTimeout(resolve, this.latency));
        return `${sku}: 3`;
      }
    }

    const moduleRef = await Test.createTestingModule({ imports: [ResilienceModule.forRoot({ clock })], providers: [InventoryClient] }).compile();
    opened.push(moduleRef);
    await moduleRef.init();
    const client = moduleRef.get(InventoryClient);
    const bulkhead = moduleRef.get(BulkheadRegistry).get('InventoryClient.stock');
    expect(bulkhead).toBeInstanceOf(AdaptiveBulkheadPolicy);
    const adaptive = bulkhead as AdaptiveBulkheadPolicy;
    expect(adaptive.options.maxConcurrent).toBe(30);
    expect(adaptive.limit).toBe(2);
    const changes: BulkheadLimitChangeEvent[] = [];
    adaptive.onLimitChange((event) => changes.push(event));

    // 40 callers, each calling again as soon as its call returns, for `ms` simulated milliseconds.
    const run = { stopped: false, answers: 0 };
    const callers = Array.from({ length: 40 }, async () => {
      while (!run.stopped) {
        expect(await client.stock('sku-1')).toBe('sku-1: 3');
        run.answers++;
      }
    });
    const drive = async (ms: number) => {
      for (let elapsed = 0; elapsed < ms; elapsed += 5) await clock.advanceAsync(5);
    };

    await drive(500);
    const grown = adaptive.limit;
    // Fast calls at the minimum RTT: the limit grew (one per round trip) up to its maximum.
    expect(grown).toBeGreaterThanOrEqual(20);
    expect(changes.every((change) => change.to > change.from)).toBe(true);
    expect(adaptive.stats().active).toBeLessThanOrEqual(grown);

    // The downstream becomes 5 × slower: every sample is a drop (RTT above 1.5 × 10 ms).
    client.latency = 50;
    changes.length = 0;
    await drive(1000);
    expect(adaptive.limit).toBeLessThan(grown / 2);
    expect(changes.some((change) => change.to < change.from && change.rttMs === 50)).toBe(true);

    run.stopped = true;
    await clock.runAllAsync();
    await Promise.all(callers);
    expect(run.answers).toBeGreaterThan(500);
    expect(adaptive.stats()).toMatchObject({ active: 0, queued: 0, rejected: 0 });
    console.log(`[adaptive e2e] limit 2 → ${grown} at 10 ms, → ${adaptive.limit} at 50 ms; ${run.answers} calls`);
  });
});

const held = { gate: gate(), entered: 0 };

@Controller('shared')
class SharedController {
  @Get('hold')
  @Bulkhead('shared')
  async hold() {
    held.entered++;
    await held.gate.promise;
    return { route: 'hold' };
  }

  @Get('low')
  @Priority('low')
  @Bulkhead('shared')
  low() {
    return { route: 'low' };
  }

  @Get('high')
  @Priority('high')
  @Bulkhead('shared')
  high() {
    return { route: 'high' };
  }
}

const SHARED_BULKHEADS: Array<[string, BulkheadSettings]> = [
  ['a fixed bulkhead', { maxConcurrent: 1, maxQueue: 1 }],
  ['an adaptive bulkhead', { adaptive: { initialLimit: 1, minLimit: 1, maxLimit: 1 }, maxQueue: 1 }],
];

describe.each(PLATFORMS)('priority in a full bulkhead queue over HTTP (%s)', (platform) => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it.each(SHARED_BULKHEADS)('with %s: a @Priority("high") request displaces a queued @Priority("low") one, which answers 503', async (_kind, settings) => {
    held.gate = gate();
    held.entered = 0;
    t = await createApp(platform, {
      imports: [ResilienceModule.forRoot({ policies: { shared: { bulkhead: settings } } })],
      controllers: [SharedController],
    });
    const bulkhead = t.app.get(BulkheadRegistry).get('shared');
    expect(bulkhead).toBeInstanceOf('adaptive' in settings ? AdaptiveBulkheadPolicy : BulkheadPolicy);
    const queued = (count: number) =>
      new Promise<void>((resolve) => {
        const subscription = bulkhead.onQueue((event) => {
          if (event.queued === count) {
            subscription.dispose();
            resolve();
          }
        });
      });

    const hold = request(t.server).get('/shared/hold').then((response) => response);
    while (held.entered === 0) await flushMicrotasks();
    const lowQueued = queued(1);
    const low = request(t.server).get('/shared/low').then((response) => response);
    await lowQueued;
    const high = request(t.server).get('/shared/high').then((response) => response);

    const lowResponse = await low;
    expect(lowResponse.status).toBe(503);
    expect(lowResponse.body).toMatchObject({ statusCode: 503, message: 'Bulkhead "shared": displaced from the queue by a call of higher priority' });
    expect(bulkhead.stats()).toMatchObject({ active: 1, queued: 1, rejected: 1 });

    held.gate.open();
    expect((await hold).body).toEqual({ route: 'hold' });
    const highResponse = await high;
    expect([highResponse.status, highResponse.body]).toEqual([200, { route: 'high' }]);
    // A low request now finds a free permit and is served.
    await request(t.server).get('/shared/low').expect(200, { route: 'low' });
    expect(bulkhead.stats()).toMatchObject({ active: 0, queued: 0, rejected: 1 });
  });

  it('a low request arriving at a full queue of high ones is refused "full" (503), the high ones are served', async () => {
    held.gate = gate();
    held.entered = 0;
    t = await createApp(platform, {
      imports: [ResilienceModule.forRoot({ policies: { shared: { bulkhead: { maxConcurrent: 1, maxQueue: 1 } } } })],
      controllers: [SharedController],
    });
    const bulkhead = t.app.get(BulkheadRegistry).get('shared');
    const hold = request(t.server).get('/shared/hold').then((response) => response);
    while (held.entered === 0) await flushMicrotasks();
    const highQueued = new Promise<void>((resolve) => {
      const subscription = bulkhead.onQueue(() => {
        subscription.dispose();
        resolve();
      });
    });
    const high = request(t.server).get('/shared/high').then((response) => response);
    await highQueued;
    const refused = await request(t.server).get('/shared/low').expect(503);
    expect(refused.body).toMatchObject({ message: 'Bulkhead "shared" is full (1 running, 1 queued)' });
    held.gate.open();
    expect((await hold).status).toBe(200);
    expect((await high).body).toEqual({ route: 'high' });
  });
});
