import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../lib/core/clock.js';
import { InvalidOptionError } from '../../lib/core/errors.js';
import { deadlineAxiosInterceptor, deadlineHeaders, formatDeadline, parseDeadline, withDeadline } from '../../lib/nest/deadline/deadline-headers.js';
import { resolveDeadlinePropagationOptions, type DeadlineFormat } from '../../lib/nest/deadline/deadline.options.js';
import { TimeoutPolicy } from '../../lib/policies/timeout/timeout.policy.js';

// Parsing and writing deadline headers, and the helpers that stamp them on outgoing calls, read
// on a FakeClock: the time left is exact, so every assertion is an equality.

const FORMATS: DeadlineFormat[] = ['timeout-ms', 'epoch-ms', 'grpc-timeout'];
const NOW_EPOCH = 1_767_225_600_000;

describe('parseDeadline', () => {
  it('reads the time left in each format', () => {
    expect(parseDeadline('250', 'timeout-ms')).toBe(250);
    expect(parseDeadline('12.5', 'timeout-ms')).toBe(12.5);
    expect(parseDeadline('0', 'timeout-ms')).toBe(0);
    expect(parseDeadline(String(NOW_EPOCH + 400), 'epoch-ms', NOW_EPOCH)).toBe(400);
    expect(parseDeadline(String(NOW_EPOCH - 5), 'epoch-ms', NOW_EPOCH)).toBe(-5);
    expect(parseDeadline('2H', 'grpc-timeout')).toBe(7_200_000);
    expect(parseDeadline('3M', 'grpc-timeout')).toBe(180_000);
    expect(parseDeadline('2S', 'grpc-timeout')).toBe(2_000);
    expect(parseDeadline('100m', 'grpc-timeout')).toBe(100);
    expect(parseDeadline('1500u', 'grpc-timeout')).toBe(1.5);
    expect(parseDeadline('2000000n', 'grpc-timeout')).toBeCloseTo(2, 9);
    expect(parseDeadline('99999999m', 'grpc-timeout')).toBe(99_999_999);
  });

  it.each([
    ['timeout-ms', ''],
    ['timeout-ms', '-5'],
    ['timeout-ms', '1e3'],
    ['timeout-ms', '100ms'],
    ['timeout-ms', ' 100'],
    ['timeout-ms', '100, 200'],
    ['timeout-ms', 'Infinity'],
    ['timeout-ms', '9'.repeat(400)],
    ['epoch-ms', '2026-01-01T00:00:00Z'],
    ['epoch-ms', '1.5'],
    ['grpc-timeout', '100'],
    ['grpc-timeout', '100ms'],
    ['grpc-timeout', '123456789m'],
    ['grpc-timeout', '1s'],
    ['grpc-timeout', 'm'],
    ['grpc-timeout', '-1S'],
  ] as Array<[DeadlineFormat, string]>)('ignores a malformed %s value %j', (format, value) => {
    expect(parseDeadline(value, format, NOW_EPOCH)).toBeUndefined();
  });
});

describe('formatDeadline', () => {
  it('writes each format', () => {
    expect(formatDeadline(250.9, 'timeout-ms')).toBe('250');
    expect(formatDeadline(-3, 'timeout-ms')).toBe('0');
    expect(formatDeadline(400.7, 'epoch-ms', NOW_EPOCH)).toBe(String(NOW_EPOCH + 400));
    expect(formatDeadline(250.9, 'grpc-timeout')).toBe('250m');
    expect(formatDeadline(0, 'grpc-timeout')).toBe('0n');
    expect(formatDeadline(0.25, 'grpc-timeout')).toBe('250u');
    expect(formatDeadline(100_000_000, 'grpc-timeout')).toBe('100000S');
    expect(formatDeadline(1e12, 'grpc-timeout')).toBe('16666666M');
    expect(formatDeadline(1e14, 'grpc-timeout')).toBe('27777777H');
  });

  it('round-trips through parseDeadline, never granting more time, losing less than one unit', () => {
    fc.assert(
      fc.property(fc.constantFrom(...FORMATS), fc.double({ min: 0, max: 1e13, noNaN: true }), (format, remaining) => {
        const value = formatDeadline(remaining, format, NOW_EPOCH);
        const read = parseDeadline(value, format, NOW_EPOCH);
        expect(read).toBeDefined();
        expect(read!).toBeLessThanOrEqual(remaining);
        // The unit written: ms for the first two formats; gRPC's is the finest that fits 8 digits.
        const unit = format === 'grpc-timeout' ? parseDeadline(`1${value.at(-1)}`, 'grpc-timeout')! : 1;
        expect(remaining - read!).toBeLessThan(unit);
        expect(value).toMatch(format === 'grpc-timeout' ? /^\d{1,8}[HMSmun]$/ : /^\d+$/);
      }),
    );
  });
});

describe('option validation', () => {
  it('applies the defaults and lower-cases the header', () => {
    expect(resolveDeadlinePropagationOptions({})).toEqual({ header: 'x-request-deadline', format: 'timeout-ms', maxDeadlineMs: Infinity, onExpired: 'reject' });
    expect(resolveDeadlinePropagationOptions({ header: 'Grpc-Timeout', format: 'grpc-timeout', maxDeadline: '2s', onExpired: 'ignore' })).toEqual({
      header: 'grpc-timeout',
      format: 'grpc-timeout',
      maxDeadlineMs: 2_000,
      onExpired: 'ignore',
    });
  });

  it.each([
    [{ header: '' }, 'header'],
    [{ header: 'x deadline' }, 'header'],
    [{ header: 42 }, 'header'],
    [{ format: 'seconds' }, 'format'],
    [{ maxDeadline: 0 }, 'maxDeadline'],
    [{ maxDeadline: '-1s' }, 'maxDeadline'],
    [{ maxDeadline: 2 ** 31 }, 'maxDeadline'],
    [{ onExpired: 'continue' }, 'onExpired'],
    [{ headers: 'x-deadline' }, 'headers'],
  ])('rejects %j naming %s', (options, option) => {
    const error = (() => {
      try {
        resolveDeadlinePropagationOptions(options as never);
      } catch (thrown) {
        return thrown;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).option).toBe(option);
  });

  it('checks the helpers’ options too', () => {
    expect(() => deadlineHeaders({ format: 'ms' as never })).toThrow(InvalidOptionError);
    expect(() => withDeadline({}, { header: 'a b' })).toThrow(InvalidOptionError);
    expect(() => deadlineAxiosInterceptor({ clok: new FakeClock() } as never)).toThrow(/no such option/);
  });
});

describe('the helpers', () => {
  const clock = new FakeClock(1_000);
  const policy = new TimeoutPolicy('300ms', { clock });

  it('add nothing outside a call with a deadline', () => {
    const init = { method: 'POST' };
    expect(deadlineHeaders()).toEqual({});
    expect(withDeadline(init)).toBe(init);
    expect(withDeadline()).toEqual({});
    const config = { headers: { accept: 'json' } };
    expect(deadlineAxiosInterceptor()(config)).toEqual({ headers: { accept: 'json' } });
  });

  it('stamp the time left on the policy clock, in the format asked for', async () => {
    const seen = await policy.execute(async () => {
      clock.advance(120);
      await Promise.resolve();
      return {
        plain: deadlineHeaders({ clock }),
        grpc: deadlineHeaders({ clock, header: 'grpc-timeout', format: 'grpc-timeout' }),
        epoch: deadlineHeaders({ clock, format: 'epoch-ms' }),
      };
    });
    expect(seen.plain).toEqual({ 'x-request-deadline': '180' });
    expect(seen.grpc).toEqual({ 'grpc-timeout': '180m' });
    const epoch = Number(seen.epoch['x-request-deadline']);
    expect(Math.abs(epoch - (Date.now() + 180))).toBeLessThan(1_000);
  });

  it('withDeadline keeps the caller’s headers and combines the signals', async () => {
    const caller = new AbortController();
    const inits = await policy.execute(async (context) => {
      clock.advance(100);
      return {
        record: withDeadline({ method: 'PUT', headers: { accept: 'application/json' }, signal: caller.signal }, { clock }),
        tuples: withDeadline({ headers: [['x-trace', '1']] }, { clock }),
        headers: withDeadline({ headers: new Headers({ 'x-request-deadline': '999999' }) }, { clock }),
        own: context.signal,
      };
    });
    const record = new Headers(inits.record.headers);
    expect(inits.record.method).toBe('PUT');
    expect(record.get('accept')).toBe('application/json');
    expect(record.get('x-request-deadline')).toBe('200');
    expect(new Headers(inits.tuples.headers).get('x-trace')).toBe('1');
    expect(new Headers(inits.tuples.headers).get('x-request-deadline')).toBe('200');
    // Ours reflects the time really left: a stale value from the caller is replaced.
    expect(new Headers(inits.headers.headers).get('x-request-deadline')).toBe('200');
    expect(inits.tuples.signal).toBe(inits.own);
    expect(inits.record.signal!.aborted).toBe(false);
    caller.abort(new Error('caller gave up'));
    expect(inits.record.signal!.aborted).toBe(true);
    expect(inits.tuples.signal!.aborted).toBe(false);
  });

  it('the signal withDeadline gives fires at the call’s deadline', async () => {
    let init: RequestInit | undefined;
    const call = policy.execute(async () => {
      init = withDeadline({}, { clock });
      await new Promise((resolve) => init!.signal!.addEventListener('abort', resolve, { once: true }));
    });
    const outcome = call.catch((error: unknown) => error);
    expect(init!.signal!.aborted).toBe(false);
    clock.advance(300);
    expect(init!.signal!.aborted).toBe(true);
    expect(await outcome).toMatchObject({ name: 'TimeoutExceededError' });
  });

  it('the axios interceptor sets the header on AxiosHeaders, plain objects and missing headers', async () => {
    const intercept = deadlineAxiosInterceptor({ clock, header: 'grpc-timeout', format: 'grpc-timeout' });
    class AxiosHeadersLike {
      readonly values = new Map<string, string>();
      set(name: string, value: string): this {
        this.values.set(name, value);
        return this;
      }
    }
    const foreignSignal = { aborted: false, addEventListener() {}, removeEventListener() {} };
    const seen = await policy.execute(async (context) => {
      clock.advance(50);
      return {
        axiosHeaders: intercept({ headers: new AxiosHeadersLike(), url: '/a' }),
        plain: intercept({ headers: { accept: 'json' } as Record<string, string> }),
        none: intercept<{ headers?: Record<string, string>; signal?: AbortSignal }>({}),
        foreign: intercept({ signal: foreignSignal }),
        own: context.signal,
      };
    });
    expect(seen.axiosHeaders.headers.values.get('grpc-timeout')).toBe('250m');
    expect(seen.axiosHeaders.url).toBe('/a');
    expect(seen.plain.headers).toEqual({ accept: 'json', 'grpc-timeout': '250m' });
    expect(seen.none.headers).toEqual({ 'grpc-timeout': '250m' });
    expect(seen.none.signal).toBe(seen.own);
    expect(seen.foreign.signal).toBe(foreignSignal);
  });
});
