// fast-check documents its default import (`fc.integer`, ...); the rule would have every helper imported by name.
// oxlint-disable import/no-named-as-default-member
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from '../../../lib/core/clock.js';
import { OperationAbortedError } from '../../../lib/core/errors.js';
import { rejectionBrand } from '../../../lib/core/rejection.js';
import { CircuitBreakerPolicy, isCircuitOpenError, type CircuitBreakerOptions, type CircuitState } from '../../../lib/policies/circuit-breaker/index.js';
import { deferred, httpError, settledOf, type Deferred } from './helpers.js';

/**
 * E2 — the breaker against a reference model. The model is written the naive way: every
 * outcome kept in a list and the window recomputed by filtering it, and time-driven
 * transitions replayed as a loop of virtual timers in time order. The breaker under test keeps
 * running totals and applies the same transitions lazily.
 */

interface Config {
  readonly windowType: 'count' | 'time';
  readonly windowSize: number;
  readonly windowBuckets: number;
  readonly minimumCalls: number;
  readonly failureRateThreshold: number;
  readonly slowCallRateThreshold: number;
  readonly slowCallDuration: number;
  readonly consecutiveFailures: number | undefined;
  readonly openDuration: number;
  readonly halfOpenMaxCalls: number;
  readonly probeTimeout: number | undefined;
  readonly shadow: boolean;
  readonly start: number;
}

type Kind = 'success' | 'failure' | 'client' | 'ignored' | 'aborted' | 'rejection';

interface Refusal {
  readonly state: CircuitState;
  readonly retryAfterMs: number | undefined;
}

interface ModelStats {
  state: CircuitState;
  calls: number;
  failures: number;
  slowCalls: number;
  consecutiveFailures: number;
  halfOpenInFlight: number;
  openUntilMs?: number;
}

class Model {
  state: CircuitState = 'CLOSED';
  private epoch = 0;
  private outcomes: Array<{ at: number; failure: boolean; slow: boolean }> = [];
  private streak = 0;
  private nextProbeAt = 0;
  private readonly probes = new Map<number, number>();
  private probeSuccesses = 0;
  private readonly tracked = new Map<number, { epoch: number; start: number }>();
  private readonly probeTimeout: number;

  constructor(private readonly config: Config) {
    this.probeTimeout = config.probeTimeout ?? config.openDuration;
  }

  private go(to: CircuitState): void {
    this.state = to;
    this.epoch++;
    this.probes.clear();
    this.probeSuccesses = 0;
    if (to === 'CLOSED' || to === 'DISABLED') {
      this.outcomes = [];
      this.streak = 0;
    }
  }

  private open(at: number): void {
    this.go('OPEN');
    this.nextProbeAt = at + this.config.openDuration;
  }

  private probeDeadline(): number {
    return Math.min(...this.probes.values()) + this.probeTimeout;
  }

  /** Fires the virtual timers due by `now`, in time order. */
  tick(now: number): void {
    for (;;) {
      if (this.state === 'HALF_OPEN' && this.probes.size > 0 && this.probeDeadline() <= now) {
        this.open(this.probeDeadline());
      } else if (this.state === 'OPEN' && this.nextProbeAt <= now) {
        this.go('HALF_OPEN');
      } else {
        return;
      }
    }
  }

  /** Returns whether the task runs and, when the breaker refuses (or would, in shadow mode), why. */
  admit(id: number, now: number): { runs: boolean; refusal?: Refusal } {
    this.tick(now);
    const state = this.state;
    if (state === 'CLOSED' || (state === 'HALF_OPEN' && this.probes.size + this.probeSuccesses < this.config.halfOpenMaxCalls)) {
      this.tracked.set(id, { epoch: this.epoch, start: now });
      if (state === 'HALF_OPEN') this.probes.set(id, now);
      return { runs: true };
    }
    if (state === 'DISABLED') return { runs: true };
    const retryAfterMs = state === 'OPEN' ? this.nextProbeAt - now : state === 'HALF_OPEN' ? this.probeDeadline() - now : undefined;
    return { runs: this.config.shadow, refusal: { state, retryAfterMs } };
  }

  settle(id: number, kind: Kind, now: number): void {
    const call = this.tracked.get(id);
    if (call === undefined) return;
    this.tracked.delete(id);
    this.tick(now);
    if (call.epoch !== this.epoch) return;
    const slow = now - call.start > this.config.slowCallDuration;
    const verdict = kind === 'failure' ? 'failure' : kind === 'success' || kind === 'client' ? 'success' : 'ignored';
    if (this.state === 'HALF_OPEN') {
      this.probes.delete(id);
      if (verdict === 'ignored') return;
      if (verdict === 'failure' || (slow && this.config.slowCallRateThreshold < 100)) {
        this.open(now);
      } else if (++this.probeSuccesses === this.config.halfOpenMaxCalls) {
        this.go('CLOSED');
      }
      return;
    }
    if (verdict === 'ignored') return;
    const failure = verdict === 'failure';
    this.outcomes.push({ at: now, failure, slow });
    this.streak = failure ? this.streak + 1 : 0;
    if (this.config.consecutiveFailures !== undefined) {
      if (this.streak >= this.config.consecutiveFailures) this.open(now);
      return;
    }
    const window = this.window(now);
    const { minimumCalls, failureRateThreshold, slowCallRateThreshold } = this.config;
    if (window.calls >= minimumCalls && (window.failures * 100 >= failureRateThreshold * window.calls || window.slowCalls * 100 >= slowCallRateThreshold * window.calls)) {
      this.open(now);
    }
  }

  private window(now: number): { calls: number; failures: number; slowCalls: number } {
    const { windowType, windowSize, windowBuckets } = this.config;
    let list = this.outcomes;
    if (windowType === 'count') {
      list = list.slice(-windowSize);
    } else {
      const width = windowSize / windowBuckets;
      const current = Math.floor(now / width);
      list = list.filter((outcome) => Math.floor(outcome.at / width) > current - windowBuckets);
    }
    return {
      calls: list.length,
      failures: list.filter((outcome) => outcome.failure).length,
      slowCalls: list.filter((outcome) => outcome.slow).length,
    };
  }

  stats(now: number): ModelStats {
    this.tick(now);
    const stats: ModelStats = {
      state: this.state,
      ...this.window(now),
      consecutiveFailures: this.streak,
      halfOpenInFlight: this.state === 'HALF_OPEN' ? this.probes.size : 0,
    };
    if (this.state === 'OPEN') stats.openUntilMs = this.nextProbeAt - now;
    return stats;
  }

  /** Milliseconds to the next time-driven transition, if any. */
  nextEvent(now: number): number | undefined {
    this.tick(now);
    if (this.state === 'OPEN') return this.nextProbeAt - now;
    if (this.state === 'HALF_OPEN' && this.probes.size > 0) return this.probeDeadline() - now;
    return undefined;
  }

  forceOpen(): void {
    this.go('FORCED_OPEN');
  }

  disable(): void {
    this.go('DISABLED');
  }

  reset(): void {
    this.go('CLOSED');
  }
}

type Action =
  | { type: 'call'; kind: Kind; duration: number }
  | { type: 'start'; count: number; hang: boolean }
  | { type: 'settle'; pick: number; kind: Kind }
  | { type: 'advance'; ms: number }
  | { type: 'toNextEvent'; offset: number }
  | { type: 'manual'; op: 'forceOpen' | 'disable' | 'reset' };

const kindArb = fc.constantFrom<Kind>('success', 'success', 'success', 'failure', 'failure', 'failure', 'failure', 'client', 'ignored', 'aborted', 'rejection');

// Weighted so that runs spend most steps in CLOSED, OPEN and HALF_OPEN: a forced or disabled
// breaker is sticky until a reset, so reset is far likelier than forceOpen and disable.
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 20, arbitrary: fc.record({ type: fc.constant('call' as const), kind: kindArb, duration: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 400 })) }) },
  { weight: 12, arbitrary: fc.record({ type: fc.constant('start' as const), count: fc.integer({ min: 1, max: 4 }), hang: fc.constantFrom(false, false, false, true) }) },
  { weight: 16, arbitrary: fc.record({ type: fc.constant('settle' as const), pick: fc.nat(), kind: kindArb }) },
  { weight: 12, arbitrary: fc.record({ type: fc.constant('advance' as const), ms: fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 3_000 })) }) },
  { weight: 8, arbitrary: fc.record({ type: fc.constant('toNextEvent' as const), offset: fc.constantFrom(-1, 0, 0, 1) }) },
  { weight: 3, arbitrary: fc.record({ type: fc.constant('manual' as const), op: fc.constant('reset' as const) }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('manual' as const), op: fc.constantFrom('forceOpen' as const, 'disable' as const) }) },
);

const configArb: fc.Arbitrary<Config> = fc
  .record({
    windowType: fc.constantFrom('count' as const, 'time' as const),
    countSize: fc.integer({ min: 1, max: 8 }),
    timeSize: fc.integer({ min: 50, max: 3_000 }),
    windowBuckets: fc.integer({ min: 1, max: 6 }),
    minimumCalls: fc.integer({ min: 1, max: 8 }),
    failureRateThreshold: fc.constantFrom(25, 50, 66.6, 100),
    slowCallRateThreshold: fc.constantFrom(50, 100),
    slowCallDuration: fc.integer({ min: 10, max: 300 }),
    consecutiveFailures: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined, freq: 2 }),
    openDuration: fc.integer({ min: 50, max: 1_500 }),
    halfOpenMaxCalls: fc.integer({ min: 1, max: 3 }),
    probeTimeout: fc.option(fc.integer({ min: 20, max: 1_500 }), { nil: undefined }),
    shadow: fc.constantFrom(false, false, false, true),
    start: fc.integer({ min: 0, max: 100_000 }),
  })
  .map(({ countSize, timeSize, ...config }) => ({
    ...config,
    windowSize: config.windowType === 'count' ? countSize : timeSize,
    minimumCalls: config.windowType === 'count' ? Math.min(config.minimumCalls, countSize) : config.minimumCalls,
  }));

class Ignored extends Error {}

function errorOf(kind: Kind): unknown {
  switch (kind) {
    case 'failure':
      return new Error('downstream failed');
    case 'client':
      return httpError(404);
    case 'ignored':
      return new Ignored('ignored');
    case 'aborted':
      return new OperationAbortedError();
    case 'rejection':
      return Object.assign(new Error('refused by an inner policy'), { [rejectionBrand]: true });
    default:
      return undefined;
  }
}

interface Pending {
  readonly id: number;
  readonly gate: Deferred<string>;
  readonly hang: boolean;
}

const totals = { runs: 0, steps: 0, refusals: 0, probes: 0, trips: 0 };
const stepsByState: Partial<Record<CircuitState, number>> = {};

async function check(config: Config, actions: readonly Action[]): Promise<void> {
  const clock = new FakeClock(config.start);
  const options: CircuitBreakerOptions = {
    windowType: config.windowType,
    windowSize: config.windowSize,
    windowBuckets: config.windowType === 'time' ? config.windowBuckets : undefined,
    minimumCalls: config.minimumCalls,
    failureRateThreshold: config.failureRateThreshold,
    slowCallRateThreshold: config.slowCallRateThreshold,
    slowCallDuration: config.slowCallDuration,
    consecutiveFailures: config.consecutiveFailures,
    openDuration: config.openDuration,
    halfOpenMaxCalls: config.halfOpenMaxCalls,
    probeTimeout: config.probeTimeout,
    mode: config.shadow ? 'shadow' : 'enforce',
    ignore: Ignored,
  };
  const breaker = new CircuitBreakerPolicy(options, { clock });
  breaker.onStateChange((event) => {
    if (event.to === 'OPEN') totals.trips++;
  });
  const model = new Model(config);
  const pending: Pending[] = [];
  const refusals: Array<{ result: Promise<PromiseSettledResult<string>>; expected: Refusal }> = [];
  let nextId = 0;
  totals.runs++;

  const start = (hang: boolean): Pending | undefined => {
    const id = nextId++;
    const gate = deferred();
    const expected = model.admit(id, clock.now());
    let ran = false;
    const result = settledOf(
      breaker.execute(() => {
        ran = true;
        return gate.promise;
      }),
    );
    // An admitted task runs synchronously inside execute: this is where "OPEN never runs it" is checked.
    expect(ran, `call ${id} ran`).toBe(expected.runs);
    if (model.state === 'HALF_OPEN' && expected.refusal === undefined) totals.probes++;
    if (expected.refusal !== undefined) totals.refusals++;
    if (!expected.runs) {
      refusals.push({ result, expected: expected.refusal! });
      return undefined;
    }
    const call = { id, gate, hang };
    pending.push(call);
    return call;
  };

  const settle = (call: Pending, kind: Kind): void => {
    pending.splice(pending.indexOf(call), 1);
    model.settle(call.id, kind, clock.now());
    const error = errorOf(kind);
    if (error === undefined) call.gate.resolve('ok');
    else call.gate.reject(error);
  };

  for (const action of actions) {
    switch (action.type) {
      case 'call': {
        const call = start(false);
        clock.advance(action.duration);
        if (call !== undefined) settle(call, action.kind);
        break;
      }
      case 'start':
        for (let i = 0; i < action.count; i++) start(action.hang);
        break;
      case 'settle': {
        const live = pending.filter((call) => !call.hang);
        if (live.length > 0) settle(live[action.pick % live.length]!, action.kind);
        break;
      }
      case 'advance':
        clock.advance(action.ms);
        break;
      case 'toNextEvent': {
        const next = model.nextEvent(clock.now());
        if (next !== undefined) clock.advance(Math.max(0, next + action.offset));
        break;
      }
      case 'manual':
        model[action.op]();
        breaker[action.op]();
        break;
    }
    await flushMicrotasks();
    totals.steps++;

    for (const { result, expected } of refusals.splice(0)) {
      const outcome = await result;
      expect(outcome.status).toBe('rejected');
      const error = (outcome as PromiseRejectedResult).reason as { state: CircuitState; retryAfterMs: number | undefined };
      expect(isCircuitOpenError(error)).toBe(true);
      expect({ state: error.state, retryAfterMs: error.retryAfterMs }).toEqual(expected);
    }
    const now = clock.now();
    const expected = model.stats(now);
    expect(breaker.state).toBe(expected.state);
    stepsByState[expected.state] = (stepsByState[expected.state] ?? 0) + 1;
    const { state, calls, failures, slowCalls, consecutiveFailures, halfOpenInFlight, openUntilMs } = breaker.stats();
    const actual: ModelStats = { state, calls, failures, slowCalls, consecutiveFailures, halfOpenInFlight };
    if (openUntilMs !== undefined) actual.openUntilMs = openUntilMs;
    expect(actual).toEqual(expected);
    expect(halfOpenInFlight).toBeLessThanOrEqual(config.halfOpenMaxCalls);
    expect(clock.pendingTimers).toBe(0);
  }
  // Whatever is still pending settles without effect on anything but the model comparison above.
  for (const call of pending) call.gate.resolve('late');
  await flushMicrotasks();
}

describe('E2 circuit breaker model', () => {
  it('matches the reference model step by step', async () => {
    const runs = 250;
    await fc.assert(
      fc.asyncProperty(configArb, fc.array(actionArb, { minLength: 1, maxLength: 80, size: 'max' }), (config, actions) => check(config, actions)),
      { numRuns: runs },
    );
    console.log(
      `[E2] circuit breaker model: ${totals.runs} runs, ${totals.steps} steps, 0 divergences ` +
        `(${totals.trips} trips to OPEN, ${totals.probes} probes admitted, ${totals.refusals} refusals checked for retryAfterMs; ` +
        `steps by state: ${Object.entries(stepsByState).map(([state, count]) => `${state} ${count}`).join(', ')})`,
    );
    // The generator must reach the interesting states, or the comparison proves little.
    expect(totals.trips).toBeGreaterThan(runs);
    expect(totals.probes).toBeGreaterThan(runs / 2);
  });

  it('a hung probe cannot pin HALF_OPEN, and its late outcome changes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 5_000 }),
        fc.integer({ min: 1, max: 5_000 }),
        fc.constantFrom('resolve', 'reject'),
        async (halfOpenMaxCalls, openDuration, probeTimeout, late) => {
          const clock = new FakeClock();
          const breaker = new CircuitBreakerPolicy({ consecutiveFailures: 1, openDuration, probeTimeout, halfOpenMaxCalls }, { clock });
          await breaker.execute(() => Promise.reject(new Error('trip'))).catch(() => undefined);
          clock.advance(openDuration);
          const hung = Array.from({ length: halfOpenMaxCalls }, () => deferred());
          const results = hung.map((gate) => settledOf(breaker.execute(() => gate.promise)));
          expect(breaker.stats().halfOpenInFlight).toBe(halfOpenMaxCalls);
          clock.advance(probeTimeout - 1);
          expect(breaker.state).toBe('HALF_OPEN');
          clock.advance(1);
          expect(breaker.stats()).toMatchObject({ state: 'OPEN', openUntilMs: openDuration });
          for (const gate of hung) {
            if (late === 'resolve') gate.resolve('late');
            else gate.reject(new Error('late'));
          }
          await Promise.all(results);
          expect(breaker.stats()).toMatchObject({ state: 'OPEN', openUntilMs: openDuration });
          clock.advance(openDuration);
          await expect(breaker.execute(() => 'fresh probe')).resolves.toBe('fresh probe');
          expect(breaker.stats()).toMatchObject(halfOpenMaxCalls === 1 ? { state: 'CLOSED' } : { state: 'HALF_OPEN', halfOpenInFlight: 0 });
        },
      ),
      { numRuns: 100 },
    );
  });
});
