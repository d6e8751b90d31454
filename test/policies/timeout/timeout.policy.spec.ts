import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../lib/core/clock.js';
import { CallContext, getAbortSignal, getRemainingTime } from '../../../lib/core/context.js';
import { InvalidOptionError } from '../../../lib/core/errors.js';
import { TimeoutPolicy } from '../../../lib/policies/timeout/timeout.policy.js';
import { isTimeoutExceededError, TimeoutExceededError } from '../../../lib/policies/timeout/timeout.error.js';

function never(): Promise<never> {
  return new Promise(() => {});
}

describe('TimeoutPolicy', () => {
  it('returns the value of a call that finishes in time and leaves no timer', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy('1s', { clock });
    await expect(policy.execute(async () => 42)).resolves.toBe(42);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects with TimeoutExceededError at the deadline and aborts the signal', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy(500, { clock });
    let seen: AbortSignal | undefined;
    const result = policy.execute((context) => {
      seen = context.signal;
      return never();
    });
    const settled = result.catch((error: unknown) => error);
    clock.advance(499);
    expect(seen!.aborted).toBe(false);
    clock.advance(1);
    expect(await settled).toBeInstanceOf(TimeoutExceededError);
    expect(seen!.aborted).toBe(true);
    expect(isTimeoutExceededError(seen!.reason)).toBe(true);
    expect((seen!.reason as TimeoutExceededError).timeoutMs).toBe(500);
    expect(clock.pendingTimers).toBe(0);
  });

  it('propagates a synchronous throw and an async rejection unchanged', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy('1s', { clock });
    const boom = new Error('boom');
    await expect(policy.execute(() => { throw boom; })).rejects.toBe(boom);
    await expect(policy.execute(async () => { throw boom; })).rejects.toBe(boom);
    expect(clock.pendingTimers).toBe(0);
  });

  it('creates no AbortController unless the task reads the signal', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy('1s', { clock });
    const original = globalThis.AbortController;
    let created = 0;
    globalThis.AbortController = class extends original {
      constructor() {
        super();
        created++;
      }
    };
    try {
      await policy.execute(async () => 1);
      expect(created).toBe(0);
      await policy.execute(async (context) => context.signal.aborted);
      expect(created).toBe(1);
    } finally {
      globalThis.AbortController = original;
    }
  });

  it('exposes the signal and the remaining time through AsyncLocalStorage', async () => {
    const clock = new FakeClock(1000);
    const policy = new TimeoutPolicy('2s', { clock });
    expect(getAbortSignal()).toBeUndefined();
    expect(getRemainingTime(clock)).toBeUndefined();
    const seen = await policy.execute(async () => {
      await Promise.resolve();
      clock.advance(300);
      return { signal: getAbortSignal(), remaining: getRemainingTime(clock) };
    });
    expect(seen.signal).toBeInstanceOf(AbortSignal);
    expect(seen.remaining).toBe(1700);
  });

  it('never extends an enclosing deadline: the inner call gets at most what is left', async () => {
    const clock = new FakeClock();
    const outer = new TimeoutPolicy('1s', { clock });
    const inner = new TimeoutPolicy('10s', { clock });
    let innerDeadline = 0;
    const result = outer.execute(async () => {
      clock.advance(400);
      return inner.execute((context) => {
        innerDeadline = context.deadline;
        return never();
      });
    });
    const settled = result.catch((error: unknown) => error);
    await Promise.resolve();
    await Promise.resolve();
    expect(innerDeadline).toBe(1000);
    clock.advance(600);
    expect(await settled).toBeInstanceOf(TimeoutExceededError);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a shorter inner timeout fires first and the outer call sees its error', async () => {
    const clock = new FakeClock();
    const outer = new TimeoutPolicy('10s', { clock });
    const inner = new TimeoutPolicy('100ms', { clock });
    const result = outer.execute(() => inner.execute(() => never()));
    const settled = result.catch((error: unknown) => error);
    clock.advance(100);
    expect(await settled).toMatchObject({ timeoutMs: 100 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects at once with the caller’s reason when the caller aborts, clearing its timer', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy('1s', { clock });
    const controller = new AbortController();
    const result = policy.execute(() => never(), controller.signal);
    const reason = new Error('client went away');
    controller.abort(reason);
    await expect(result).rejects.toBe(reason);
    expect(clock.pendingTimers).toBe(0);
  });

  it('does not start a call whose context is already aborted', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy('1s', { clock });
    const parent = new CallContext();
    parent.abort(new Error('gone'));
    let ran = false;
    await expect(policy.execute(() => { ran = true; }, parent)).rejects.toThrow('gone');
    expect(ran).toBe(false);
  });

  it('emits onTimeout with the allowed time', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy('250ms', { clock });
    const events: number[] = [];
    policy.onTimeout((event) => events.push(event.timeoutMs));
    const result = policy.execute(() => never());
    clock.advance(250);
    await expect(result).rejects.toBeInstanceOf(TimeoutExceededError);
    expect(events).toEqual([250]);
  });

  it('refuses bad durations with an error naming the option and the value', () => {
    expect(() => new TimeoutPolicy(2 ** 31)).toThrow(InvalidOptionError);
    expect(() => new TimeoutPolicy(2 ** 31)).toThrow(/duration.*2147483648.*2\^31-1/);
    expect(() => new TimeoutPolicy(0)).toThrow(/"duration": got 0/);
    expect(() => new TimeoutPolicy('soon' as never)).toThrow(/"duration": got "soon"/);
    expect(() => new TimeoutPolicy({ duration: '2s', durration: 1 } as never)).toThrow(/"durration"/);
    expect(new TimeoutPolicy({ duration: '1.5s' }).options.duration).toBe(1500);
  });
});
