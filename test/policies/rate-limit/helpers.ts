import type { RateLimitAlgorithm, RateLimitDecision } from '../../../lib/policies/rate-limit/rate-limit.options.js';
import { MemoryStore } from '../../../lib/stores/memory/memory.store.js';
import type { ConsumeMode, LimitSpec, ResilienceStore } from '../../../lib/stores/store.interface.js';

export const ALGORITHM_NAMES: readonly RateLimitAlgorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];

/** A resolved limit, as the policy hands it to the store. */
export function spec(algorithm: RateLimitAlgorithm, limit: number, windowMs: number, burst = limit, name = 'default'): LimitSpec {
  return { name, algorithm, limit, windowMs, burst };
}

/** One key of a memory store, decided at explicit times. */
export class Harness {
  constructor(
    readonly limits: readonly LimitSpec[],
    readonly store = new MemoryStore(),
    readonly key = 'client',
  ) {}

  at(now: number, cost = 1, mode: ConsumeMode = 'consume'): RateLimitDecision {
    return this.store.consume(this.key, this.limits, cost, mode, now);
  }

  peek(now: number, cost = 1): RateLimitDecision {
    return this.at(now, cost, 'peek');
  }

  refund(now: number, cost = 1): RateLimitDecision {
    return this.at(now, cost, 'refund');
  }
}

/** A store that answers through promises, like a remote one. */
export class AsyncStore implements ResilienceStore {
  readonly kind = 'async-test';
  calls = 0;

  constructor(readonly inner = new MemoryStore()) {}

  consume(key: string, limits: readonly LimitSpec[], cost: number, mode: ConsumeMode, nowMs: number): Promise<RateLimitDecision> {
    this.calls++;
    return Promise.resolve().then(() => this.inner.consume(key, limits, cost, mode, nowMs));
  }

  reset(key: string, limits: readonly LimitSpec[]): Promise<void> {
    this.inner.reset(key, limits);
    return Promise.resolve();
  }
}
