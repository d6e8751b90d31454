// @Priority and the module's `loadShedding` through real applications on Express and Fastify:
// with the overload detector's delay source forced above its threshold, low-priority routes
// answer 503 with Retry-After while critical ones and a header-derived priority still get through.
import { Controller, Get, type ExecutionContext } from '@nestjs/common';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock, Priority, ResilienceEvents, ResilienceModule, type LoadShedEvent, type OverloadChangeEvent, type PriorityLevel } from 'nest-resilience';
import { createApp, PLATFORMS, type TestApp } from './http/support/app.js';

const ran: Record<string, number> = {};
const count = (name: string) => (ran[name] = (ran[name] ?? 0) + 1);

const TIERS: Record<string, PriorityLevel> = { gold: 'critical', silver: 'normal' };

@Controller('shed')
class SheddingController {
  @Get('low')
  @Priority('low')
  low() {
    count('low');
    return { route: 'low' };
  }

  @Get('critical')
  @Priority('critical')
  critical() {
    count('critical');
    return { route: 'critical' };
  }

  @Get('tiered')
  @Priority((context: ExecutionContext) => TIERS[context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers['x-tier'] ?? ''] ?? 'low')
  tiered() {
    count('tiered');
    return { route: 'tiered' };
  }

  @Get('plain')
  plain() {
    count('plain');
    return { route: 'plain' };
  }
}

const SAMPLE_MS = 250;

describe.each(PLATFORMS)('load shedding over %s', (platform) => {
  let t: TestApp;
  let clock: FakeClock;
  const probe = { delay: 0 };
  const sheds: LoadShedEvent[] = [];
  const changes: OverloadChangeEvent[] = [];

  /** Sets the delay the detector reads and lets it take enough readings to follow. */
  const overload = (delay: number) => {
    probe.delay = delay;
    clock.advance(SAMPLE_MS * 3);
  };

  beforeAll(async () => {
    clock = new FakeClock();
    t = await createApp(platform, {
      imports: [
        ResilienceModule.forRoot({
          clock,
          loadShedding: { eventLoopDelay: '100ms', sampleInterval: SAMPLE_MS, retryAfter: '2s', delaySource: () => probe.delay },
        }),
      ],
      controllers: [SheddingController],
    });
    const events = t.app.get(ResilienceEvents);
    events.onLoadShed((event) => sheds.push(event));
    events.onOverloadChange((event) => changes.push(event));
  });

  afterAll(async () => {
    await t?.close();
  });

  beforeEach(() => {
    for (const key of Object.keys(ran)) delete ran[key];
    sheds.length = 0;
    changes.length = 0;
    overload(0);
  });

  it('serves every priority while the loop keeps up', async () => {
    for (const path of ['/shed/low', '/shed/critical', '/shed/tiered', '/shed/plain']) {
      expect((await request(t.server).get(path)).status).toBe(200);
    }
    expect(ran).toEqual({ low: 1, critical: 1, tiered: 1, plain: 1 });
  });

  it('above the threshold, a low-priority route answers 503 with Retry-After without running; critical answers 200', async () => {
    overload(150);
    expect(changes).toEqual([{ level: 1, previous: 0, delayMs: 150 }]);
    const shed = await request(t.server).get('/shed/low');
    expect(shed.status).toBe(503);
    expect(shed.headers['retry-after']).toBe('2');
    expect(shed.body).toMatchObject({ statusCode: 503, error: 'Service Unavailable' });
    const critical = await request(t.server).get('/shed/critical');
    expect(critical.status).toBe(200);
    expect(critical.body).toEqual({ route: 'critical' });
    expect(ran).toEqual({ critical: 1 });
    expect(sheds).toEqual([{ priority: 0, level: 1, delayMs: 150, policy: 'SheddingController.low' }]);
  });

  it('a priority taken from a header follows the header', async () => {
    overload(250); // level 2: sheds 'low' and 'normal'
    const gold = await request(t.server).get('/shed/tiered').set('x-tier', 'gold');
    const silver = await request(t.server).get('/shed/tiered').set('x-tier', 'silver');
    const none = await request(t.server).get('/shed/tiered');
    expect([gold.status, silver.status, none.status]).toEqual([200, 503, 503]);
    expect(silver.headers['retry-after']).toBe('2');
    expect(ran).toEqual({ tiered: 1 });
    expect(sheds.map((event) => event.priority)).toEqual([1, 0]);
    overload(150); // level 1: 'normal' is back
    const again = await request(t.server).get('/shed/tiered').set('x-tier', 'silver');
    expect(again.status).toBe(200);
  });

  it('routes without @Priority are never shed, even at the highest level', async () => {
    overload(10_000);
    expect((await request(t.server).get('/shed/plain')).status).toBe(200);
    expect((await request(t.server).get('/shed/critical')).status).toBe(200);
    expect((await request(t.server).get('/shed/low')).status).toBe(503);
  });

  it('admits low priority again once the delay falls, one level per reading', async () => {
    overload(10_000);
    expect((await request(t.server).get('/shed/low')).status).toBe(503);
    probe.delay = 0;
    clock.advance(SAMPLE_MS * 2);
    expect((await request(t.server).get('/shed/low')).status).toBe(503);
    clock.advance(SAMPLE_MS);
    expect((await request(t.server).get('/shed/low')).status).toBe(200);
  });
});

describe.each(PLATFORMS)('load shedding lifecycle over %s', (platform) => {
  it('the detector samples from bootstrap and leaves no timer after app.close()', async () => {
    const clock = new FakeClock();
    let reads = 0;
    const t = await createApp(platform, {
      imports: [ResilienceModule.forRoot({ clock, loadShedding: { sampleInterval: '1s', delaySource: () => (reads++, 1000) } })],
      controllers: [SheddingController],
    });
    clock.advance(1000);
    expect(reads).toBe(1);
    expect((await request(t.server).get('/shed/low')).status).toBe(503);
    expect(clock.pendingTimers).toBe(1);
    await t.close();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(5000);
    expect(reads).toBe(1);
  });

  it('without loadShedding, @Priority sheds nothing', async () => {
    const clock = new FakeClock();
    const t = await createApp(platform, { imports: [ResilienceModule.forRoot({ clock })], controllers: [SheddingController] });
    try {
      expect((await request(t.server).get('/shed/low')).status).toBe(200);
      expect(clock.pendingTimers).toBe(0);
    } finally {
      await t.close();
    }
  });
});
