// The global `performance` is a lazy getter in Node 20: importing it saves a lookup per reading.
import { performance } from 'node:perf_hooks';

/** An opaque handle returned by {@link Clock.setTimeout}. */
export type TimerHandle = unknown;

/**
 * The source of time for every engine. Engines never call `Date.now()` or `setTimeout`
 * directly, so tests (ours and our users') can drive windows, backoff and open durations
 * with a {@link FakeClock} instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since an arbitrary, fixed origin; never goes backwards within a process. */
  now(): number;
  /** Schedules `fn` after `ms` milliseconds. Real timers are `unref`'d: they never keep a process alive. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer; a no-op for a timer that already fired or was cleared. */
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock: `performance.timeOrigin`-free monotonic milliseconds and Node's timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return timer;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

interface FakeTimer {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

/**
 * A manual clock for tests: time moves only when the test says so.
 *
 * @example
 * const clock = new FakeClock();
 * const breaker = new CircuitBreakerPolicy({ openDuration: '30s' }, { clock });
 * await clock.advanceAsync(30_000);
 */
export class FakeClock implements Clock {
  private current: number;
  private nextId = 1;
  private timers: FakeTimer[] = [];

  /** @param start the initial reading of {@link now}. @default 0 */
  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: FakeTimer = { id: this.nextId++, at: this.current + Math.max(0, ms), fn };
    // Kept sorted by due time, then by creation, so timers fire in the order real ones would.
    let index = this.timers.length;
    while (index > 0 && this.timers[index - 1]!.at > timer.at) index--;
    this.timers.splice(index, 0, timer);
    return timer.id;
  }

  clearTimeout(handle: TimerHandle): void {
    const index = this.timers.findIndex((timer) => timer.id === handle);
    if (index >= 0) this.timers.splice(index, 1);
  }

  /** Number of timers scheduled and not yet fired or cleared. */
  get pendingTimers(): number {
    return this.timers.length;
  }

  /** Sets the time without firing anything, e.g. to simulate a skewed clock. */
  set(now: number): void {
    this.current = now;
  }

  /** Moves time forward by `ms`, firing due timers synchronously in order. */
  advance(ms: number): void {
    const target = this.current + ms;
    while (this.fireNext(target));
    this.current = target;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order and letting promise callbacks
   * run between them, so code that awaits a timer and then schedules the next one (backoff,
   * queue timeouts) progresses as it would in real time.
   */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.current + ms;
    await flushMicrotasks();
    while (this.fireNext(target)) await flushMicrotasks();
    this.current = target;
    await flushMicrotasks();
  }

  /** Fires the earliest timer if it is due by `target`, moving time to it; false when none is. */
  private fireNext(target: number): boolean {
    const next = this.timers[0];
    if (next === undefined || next.at > target) return false;
    this.timers.shift();
    this.current = Math.max(this.current, next.at);
    next.fn();
    return true;
  }

  /** Fires every pending timer, advancing time to each, until none are left (bounded). */
  async runAllAsync(maxTimers = 10_000): Promise<void> {
    // A timer is often scheduled only after pending promise callbacks run (a retry's backoff
    // after the attempt's rejection): let them run before deciding nothing is left.
    await flushMicrotasks();
    for (let fired = 0; this.timers.length > 0; fired++) {
      if (fired >= maxTimers) throw new Error(`FakeClock.runAllAsync: more than ${maxTimers} timers fired; a timer keeps rescheduling itself`);
      await this.advanceAsync(this.timers[0]!.at - this.current);
    }
  }
}

/** Lets queued promise callbacks run: a macrotask boundary flushes every pending microtask. */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
