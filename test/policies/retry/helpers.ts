import { flushMicrotasks, type FakeClock } from '../../../lib/core/clock.js';

/** A seeded PRNG (mulberry32): uniform numbers in [0, 1), reproducible from the seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Attaches handlers at once, so a rejection that happens while a test drives the clock is never unhandled. */
export function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true, value }),
    (error: unknown) => ({ ok: false, error }),
  );
}

/** A task that fails with the given errors in turn, then returns `result`; records each call's time. */
export function flaky<T>(errors: readonly unknown[], result: T, clock: { now(): number }): { fn: () => Promise<T>; calls: number[] } {
  const calls: number[] = [];
  const fn = (): Promise<T> => {
    const index = calls.length;
    calls.push(clock.now());
    return index < errors.length ? Promise.reject(errors[index]) : Promise.resolve(result);
  };
  return { fn, calls };
}

/**
 * Fires every timer until none is left. Unlike `FakeClock.runAllAsync` alone, it first lets
 * pending promise callbacks run, so a timer scheduled after a rejection settles is not missed.
 */
export async function drain(clock: FakeClock): Promise<void> {
  for (;;) {
    await flushMicrotasks();
    if (clock.pendingTimers === 0) return;
    await clock.runAllAsync();
  }
}

/** Runs `fn` and returns what it threw (`undefined` when it returned). */
export function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}
