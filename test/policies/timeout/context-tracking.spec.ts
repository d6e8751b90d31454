import { AsyncLocalStorage } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../lib/core/clock.js';
import { contextTrackingEnabled, getAbortSignal, getRemainingTime } from '../../../lib/core/context.js';
import { TimeoutPolicy } from '../../../lib/policies/timeout/timeout.policy.js';
import { isTimeoutExceededError } from '../../../lib/policies/timeout/timeout.error.js';

// Our AsyncLocalStorage is switched off once no call with a deadline is in flight at the end of
// a turn (on Node 20 and 22 it slows every promise of the process while on), and on again by the
// next such call. Deadlines and signals must read the same either way.

// Where AsyncLocalStorage does not ride on async hooks (Node 24 onwards), it is never switched off.
const hookPriced = '_propagate' in AsyncLocalStorage.prototype;
const ON_WHEN_IDLE = !hookPriced;

/** Lets the current turn end (its next-tick queue included). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('context tracking on and off', () => {
  const clock = new FakeClock(0);
  const policy = new TimeoutPolicy('2s', { clock });

  it('is off once the turn ends with no call in flight, and on again for the next call', async () => {
    await policy.execute(async () => 1);
    await nextTurn();
    expect(contextTrackingEnabled()).toBe(ON_WHEN_IDLE);
    expect(getAbortSignal()).toBeUndefined();

    const seen = await policy.execute(async () => {
      await Promise.resolve();
      await nextTurn();
      return { signal: getAbortSignal(), remaining: getRemainingTime(clock) };
    });
    expect(seen.signal).toBeInstanceOf(AbortSignal);
    expect(seen.remaining).toBe(2_000);
    await nextTurn();
    expect(contextTrackingEnabled()).toBe(ON_WHEN_IDLE);
  });

  it('stays on between calls that follow each other within one turn', async () => {
    await nextTurn();
    const states: boolean[] = [];
    for (let index = 0; index < 3; index++) {
      await policy.execute(async () => 1);
      states.push(contextTrackingEnabled());
    }
    expect(states).toEqual([true, true, true]);
    await nextTurn();
    expect(contextTrackingEnabled()).toBe(ON_WHEN_IDLE);
  });

  it('stays on for a task that outlives its deadline, which still reads its aborted signal', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let late: { aborted: boolean | undefined; reason: unknown } | undefined;
    const task = policy.execute(async () => {
      await gate;
      const signal = getAbortSignal();
      late = { aborted: signal?.aborted, reason: signal?.reason };
    });
    const outcome = task.catch((error: unknown) => error);
    clock.advance(2_000);
    expect(isTimeoutExceededError(await outcome)).toBe(true);
    await nextTurn();
    expect(contextTrackingEnabled()).toBe(true);
    release();
    await gate;
    await nextTurn();
    expect(late?.aborted).toBe(true);
    expect(isTimeoutExceededError(late?.reason)).toBe(true);
    expect(contextTrackingEnabled()).toBe(ON_WHEN_IDLE);
  });

  it('nested deadlines hold after the storage was switched off and on again', async () => {
    await nextTurn();
    expect(contextTrackingEnabled()).toBe(ON_WHEN_IDLE);
    const inner = new TimeoutPolicy('10s', { clock });
    const remaining = await policy.execute(async () => {
      await nextTurn();
      clock.advance(500);
      return inner.execute(async () => {
        await nextTurn();
        return getRemainingTime(clock);
      });
    });
    expect(remaining).toBe(1_500);
    await nextTurn();
    expect(contextTrackingEnabled()).toBe(ON_WHEN_IDLE);
  });
});
