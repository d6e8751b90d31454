// N1: who a rate limit counts. The client IP honours the platform's trust-proxy setting (an
// untrusted peer cannot mint keys with X-Forwarded-For), IPv4-mapped IPv6 equals IPv4, IPv6 is
// keyed by /64, malformed headers fall back to the socket address, the key is the handler's
// identity (never the raw URL), and user-supplied key parts are hashed and length-capped.
import { Controller, Get, type ExecutionContext } from '@nestjs/common';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock, RateLimit, ResilienceModule } from 'nest-resilience';
import { normalizeIp } from '../../../lib/nest/context/client-ip.js';
import { safeKeyPart } from '../../../lib/nest/context/key-part.js';
import { createApp, PLATFORMS, RecordingStore, statuses, type TestApp } from './support/app.js';

interface Req {
  headers: Record<string, string | undefined>;
  user?: { id: string };
}

@Controller()
class IdentityController {
  @Get('limited')
  @RateLimit({ limit: 2, window: '1m', algorithm: 'fixed-window' })
  limited() {
    return { ok: true };
  }

  @Get('by-key')
  @RateLimit({ limit: 1, window: '1m', algorithm: 'fixed-window', key: (context: ExecutionContext) => context.switchToHttp().getRequest<Req>().headers['x-key'] })
  byKey() {
    return { ok: true };
  }
}

const xff = (ip: string): [string, Record<string, string>] => ['/limited', { 'X-Forwarded-For': ip }];

describe('client addresses (unit)', () => {
  it('IPv4-mapped IPv6 equals IPv4', () => {
    expect(normalizeIp('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(normalizeIp('::FFFF:203.0.113.7')).toBe('203.0.113.7');
    expect(normalizeIp('203.0.113.7')).toBe('203.0.113.7');
  });

  it('accepts only dotted quads of 0–255 as IPv4', () => {
    for (const address of ['0.0.0.0', '255.255.255.255', '10.0.0.1']) expect(normalizeIp(address)).toBe(address);
    for (const address of ['256.1.1.1', '1.2.3', '1.2.3.4.5', '1..2.3', '1.2.3.', '.1.2.3', '1.2.3.4x', '1234.1.1.1', 'a.b.c.d', 'localhost']) {
      expect(normalizeIp(address)).toBeUndefined();
    }
  });

  it('IPv6 is keyed by its /64 (configurable)', () => {
    const a = normalizeIp('2001:db8:1:2:aaaa:bbbb:cccc:dddd');
    expect(a).toBe(normalizeIp('2001:db8:1:2::1'));
    expect(a).toBe(normalizeIp('[2001:DB8:1:2::ffff]'));
    expect(a).toBe(normalizeIp('2001:db8:1:2::1%eth0'));
    expect(a).not.toBe(normalizeIp('2001:db8:1:3::1'));
    expect(normalizeIp('2001:db8:1:2::1', 128)).not.toBe(normalizeIp('2001:db8:1:2::2', 128));
    expect(normalizeIp('2001:db8:1:2::1', 48)).toBe(normalizeIp('2001:db8:1:ffff::2', 48));
  });

  it('anything that is not an address is refused, never thrown on', () => {
    for (const value of ['', 'garbage', '1.2.3', '256.1.1.1', '1.2.3.4.5', ':::', 'a'.repeat(10_000), '1.2.3.4, 5.6.7.8', undefined]) {
      expect(normalizeIp(value)).toBeUndefined();
    }
  });

  it('user-supplied key parts are hashed and length-capped when unsafe', () => {
    expect(safeKeyPart('alice')).toBe('alice');
    for (const value of ['{tag}', 'a:b*', 'x'.repeat(10_240), 'with space', 'ümlaut']) {
      const part = safeKeyPart(value);
      expect(part.length).toBeLessThanOrEqual(64);
      expect(part).not.toMatch(/[{}*\s]/);
    }
    expect(safeKeyPart('{a}')).not.toBe(safeKeyPart('{b}'));
    expect(safeKeyPart('x'.repeat(10_240))).not.toBe(safeKeyPart('x'.repeat(10_241)));
  });
});

describe.each(PLATFORMS)('client identity over %s', (platform) => {
  describe('without trust proxy (the platform default)', () => {
    let t: TestApp;
    let store: RecordingStore;
    beforeAll(async () => {
      store = new RecordingStore();
      t = await createApp(
        platform,
        { imports: [ResilienceModule.forRoot({ clock: new FakeClock(), store })], controllers: [IdentityController] },
        { lenientRouting: true },
      );
    });
    afterAll(() => t.close());

    it('a rotating X-Forwarded-For from the peer does not create new keys', async () => {
      await request(t.server).get('/limited').set('X-Forwarded-For', '198.51.100.1').expect(200);
      await request(t.server).get('/limited').set('X-Forwarded-For', '198.51.100.2').expect(200);
      for (let index = 3; index < 6; index++) {
        await request(t.server).get('/limited').set('X-Forwarded-For', `198.51.100.${index}`).set('X-Real-IP', `203.0.113.${index}`).expect(429);
      }
      const keys = new Set(store.consumedKeys());
      expect(keys.size).toBe(1);
      expect([...keys][0]).toMatch(/^(127\.0\.0\.1|0:0:0:0:0:0:0:1\/64)$/);
    });

    it('/limited, /LIMITED/ and HEAD /limited share one budget (the handler, not the URL)', async () => {
      store.calls.length = 0;
      await request(t.server).get('/by-key').set('x-key', 'shared').expect(200);
      await request(t.server).get('/BY-KEY/').set('x-key', 'shared').expect(429);
      await request(t.server).head('/by-key').set('x-key', 'shared').expect(429);
      await request(t.server).get('/by-key?cache=bust').set('x-key', 'shared').expect(429);
      const limits = new Set(store.calls.flatMap((call) => call.limits));
      expect(limits.size).toBe(1);
      expect([...limits][0]).toContain('IdentityController.byKey');
    });

    it('user-supplied key parts reach the store hashed and length-capped', async () => {
      store.calls.length = 0;
      const hostile = ['{slot}', 'a:b:*', 'x'.repeat(10_240), 'x'.repeat(10_240) + 'y'];
      for (const value of hostile) await request(t.server).get('/by-key').set('x-key', value).expect(200);
      const keys = store.consumedKeys();
      expect(keys).toHaveLength(hostile.length);
      expect(new Set(keys).size).toBe(hostile.length); // no collisions
      for (const key of keys) {
        expect(key.length).toBeLessThanOrEqual(80);
        expect(key).not.toMatch(/[{}*]/);
      }
      // A key function's value never shares a budget with a client address.
      await request(t.server).get('/by-key').set('x-key', '127.0.0.1').expect(200);
      await request(t.server).get('/by-key').expect(200);
    });

    it('malformed forwarding headers fall back to the socket address, never a 500', async () => {
      for (const value of ['garbage', ', ,', '[::1', '999.999.999.999', 'x'.repeat(8_000)]) {
        const response = await request(t.server).get('/by-key').set('X-Forwarded-For', value).set('Forwarded', `for=${value}`);
        expect([200, 429]).toContain(response.status);
      }
    });
  });

  describe('with trust proxy', () => {
    let t: TestApp;
    let store: RecordingStore;
    beforeAll(async () => {
      store = new RecordingStore();
      t = await createApp(platform, { imports: [ResilienceModule.forRoot({ clock: new FakeClock(), store })], controllers: [IdentityController] }, { trustProxy: true });
    });
    afterAll(() => t.close());

    it('X-Forwarded-For names the client', async () => {
      expect(await statuses(t.server, [xff('198.51.100.1'), xff('198.51.100.1'), xff('198.51.100.1'), xff('198.51.100.2')])).toEqual([200, 200, 429, 200]);
      expect(store.consumedKeys()).toEqual(['198.51.100.1', '198.51.100.1', '198.51.100.1', '198.51.100.2']);
    });

    it('IPv4-mapped IPv6 and IPv4 are one client; an IPv6 /64 is one client', async () => {
      await request(t.server).get('/limited').set('X-Forwarded-For', '::ffff:198.51.100.9').expect(200);
      await request(t.server).get('/limited').set('X-Forwarded-For', '198.51.100.9').expect(200);
      await request(t.server).get('/limited').set('X-Forwarded-For', '::ffff:198.51.100.9').expect(429);
      await request(t.server).get('/limited').set('X-Forwarded-For', '2001:db8:1:2::1').expect(200);
      await request(t.server).get('/limited').set('X-Forwarded-For', '2001:db8:1:2:ffff::2').expect(200);
      await request(t.server).get('/limited').set('X-Forwarded-For', '2001:db8:1:2::3').expect(429);
      await request(t.server).get('/limited').set('X-Forwarded-For', '2001:db8:1:3::1').expect(200);
      expect(store.consumedKeys()).toContain('2001:db8:1:2:0:0:0:0/64');
    });

    it('a malformed X-Forwarded-For falls back to the socket address, never a 500', async () => {
      store.calls.length = 0;
      for (const value of ['garbage', 'not an ip, 198.51.100.50', '[::1', '1.2.3.4.5']) {
        const response = await request(t.server).get('/by-key').set('X-Forwarded-For', value);
        expect(response.status).not.toBe(500);
      }
      for (const key of store.consumedKeys()) expect(key).toMatch(/^(127\.0\.0\.1|0:0:0:0:0:0:0:1\/64|198\.51\.100\.50)$/);
    });
  });
});
