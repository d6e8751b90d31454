import { flushMicrotasks, type FakeClock } from '../../../lib/core/clock.js';
import type { CircuitBreakerPolicy } from '../../../lib/policies/circuit-breaker/circuit-breaker.policy.js';

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = string>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** An error carrying an HTTP status, like Nest's HttpException or an HTTP client's error. */
export function httpError(status: number): Error & { status: number } {
  return Object.assign(new Error(`HTTP ${status}`), { status });
}

/** Settled outcome of a promise, without an unhandled rejection. */
export function settledOf<T>(promise: Promise<T>): Promise<PromiseSettledResult<T>> {
  return Promise.allSettled([promise]).then((results) => results[0]!);
}

export async function succeed(breaker: CircuitBreakerPolicy, times = 1): Promise<void> {
  for (let i = 0; i < times; i++) await breaker.execute(() => 'ok');
}

export async function fail(breaker: CircuitBreakerPolicy, times = 1, error: unknown = new Error('boom')): Promise<void> {
  for (let i = 0; i < times; i++) {
    await breaker.execute(() => Promise.reject(error)).catch(() => undefined);
  }
}

/** Runs one call that takes `ms` on the fake clock and then succeeds or fails. */
export async function timed(breaker: CircuitBreakerPolicy, clock: FakeClock, ms: number, error?: unknown): Promise<PromiseSettledResult<string>> {
  const gate = deferred();
  const result = settledOf(breaker.execute(() => gate.promise));
  clock.advance(ms);
  if (error === undefined) gate.resolve('ok');
  else gate.reject(error);
  await flushMicrotasks();
  return result;
}
