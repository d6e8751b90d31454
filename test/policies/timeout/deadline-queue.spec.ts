import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../lib/core/clock.js';
import { CallContext } from '../../../lib/core/context.js';
import { TimeoutPolicy } from '../../../lib/policies/timeout/timeout.policy.js';
import { isTimeoutExceededError } from '../../../lib/policies/timeout/timeout.error.js';

// A policy's calls wait for their deadlines in one queue under a single timer (see
// DeadlineQueue): each must still time out exactly at its own deadline, whatever the order in
// which the others settle, and no timer may outlive the last call.

interface Pending {
  readonly startedAt: number;
  /** Its own deadline, or an earlier enclosing one. */
  readonly deadline: number;
  outcome: 'pending' | 'resolved' | 'timedOut' | 'other';
  release: (() => void) | undefined;
}

function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Starts a call of `policy` that runs until released; records how it ends. */
function startCall(policy: TimeoutPolicy, clock: FakeClock, duration: number, parent?: CallContext): Pending {
  const now = clock.now();
  const call: Pending = { startedAt: now, deadline: Math.min(now + duration, parent?.deadline ?? Infinity), outcome: 'pending', release: undefined };
  policy
    .execute(
      () =>
        new Promise<void>((resolve) => {
          call.release = resolve;
        }),
      parent,
    )
    .then(
      () => (call.outcome = 'resolved'),
      (error: unknown) => (call.outcome = isTimeoutExceededError(error) ? 'timedOut' : 'other'),
    );
  return call;
}

describe('TimeoutPolicy deadline queue', () => {
  it('holds one timer for many pending calls, and none once they are gone', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy(1_000, { clock });
    const calls: Pending[] = [];
    for (let i = 0; i < 100; i++) {
      calls.push(startCall(policy, clock, 1_000));
      clock.advance(3);
    }
    expect(clock.pendingTimers).toBe(1);
    calls[0]!.release!();
    calls[50]!.release!();
    await flush();
    expect(clock.pendingTimers).toBe(1);
    for (const call of calls) call.release!();
    await flush();
    expect(calls.every((call) => call.outcome === 'resolved')).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it('expires the call now in front at its own deadline when the first one settled early', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy(1_000, { clock });
    const first = startCall(policy, clock, 1_000);
    clock.advance(400);
    const second = startCall(policy, clock, 1_000);
    first.release!();
    await flush();
    await clock.advanceAsync(999);
    // The timer armed for the first call (t = 1000) fired and found nothing due.
    expect(second.outcome).toBe('pending');
    expect(clock.pendingTimers).toBe(1);
    await clock.advanceAsync(1);
    expect(second.outcome).toBe('timedOut');
    expect(clock.pendingTimers).toBe(0);
  });

  it('gives a call capped by an earlier enclosing deadline a timer of its own', async () => {
    const clock = new FakeClock();
    const policy = new TimeoutPolicy(1_000, { clock });
    const queued = startCall(policy, clock, 1_000);
    const parent = new CallContext(undefined, 300);
    const capped = startCall(policy, clock, 1_000, parent);
    expect(clock.pendingTimers).toBe(2);
    await clock.advanceAsync(300);
    expect(capped.outcome).toBe('timedOut');
    expect(queued.outcome).toBe('pending');
    await clock.advanceAsync(700);
    expect(queued.outcome).toBe('timedOut');
    expect(clock.pendingTimers).toBe(0);
  });

  it('times out every call exactly at its deadline, in any pattern of starts, settlements and clock moves (model)', async () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('start' as const), capped: fc.option(fc.integer({ min: 1, max: 400 }), { nil: undefined }) }),
      fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 300 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 60 }), async (steps) => {
        const clock = new FakeClock();
        const duration = 250;
        const policy = new TimeoutPolicy(duration, { clock });
        const calls: Pending[] = [];
        const check = (): void => {
          const now = clock.now();
          for (const call of calls) {
            // Released before its deadline: resolved. Otherwise: timed out exactly when due.
            if (call.outcome === 'resolved') continue;
            expect(call.outcome).toBe(now >= call.deadline ? 'timedOut' : 'pending');
          }
        };
        for (const action of steps) {
          if (action.kind === 'start') {
            const parent = action.capped === undefined ? undefined : new CallContext(undefined, clock.now() + action.capped);
            calls.push(startCall(policy, clock, duration, parent));
          } else if (action.kind === 'release') {
            const pending = calls.filter((call) => call.outcome === 'pending');
            const call = pending[action.pick % Math.max(1, pending.length)];
            call?.release!();
          } else {
            await clock.advanceAsync(action.ms);
          }
          await flush();
          check();
        }
        for (const call of calls) call.release?.();
        await flush();
        expect(clock.pendingTimers).toBe(0);
      }),
      { numRuns: 300 },
    );
  });
});
