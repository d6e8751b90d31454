// fast-check documents its default import (`fc.integer`, ...); the rule would have every helper imported by name.
// oxlint-disable import/no-named-as-default-member
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from '../../../lib/core/clock.js';
import { CallContext } from '../../../lib/core/context.js';
import { BulkheadPolicy, isBulkheadRejectedError, type BulkheadStats } from '../../../lib/policies/bulkhead/index.js';
import { isTimeoutExceededError } from '../../../lib/policies/timeout/timeout.error.js';
import { TimeoutPolicy } from '../../../lib/policies/timeout/timeout.policy.js';

// E3 (RELIABILITY.md): a model-based storm. A reference model predicts, after every step, who
// holds a permit, who waits (in FIFO order), who gave up and how every caller settles; the
// bulkhead must match it exactly, and must never exceed its limits even between steps.

type Body = 'async' | 'sync-throw' | 'sync-value';
/** none: no context; abortable: a CallContext the test aborts; timeout: through a TimeoutPolicy; aborted: aborted before the call. */
type ContextKind = 'none' | 'abortable' | 'timeout' | 'aborted';

type Step =
  | { t: 'call'; body: Body; context: ContextKind; timeoutMs: number }
  | { t: 'settle'; pick: number; ok: boolean }
  | { t: 'abort-queued'; pick: number }
  | { t: 'abort-running'; pick: number }
  | { t: 'advance'; ms: number };

interface Scenario {
  maxConcurrent: number;
  maxQueue: number;
  queueTimeout: number | undefined;
  steps: Step[];
}

type Expected =
  | { kind: 'value'; value: unknown }
  | { kind: 'error'; error: unknown }
  | { kind: 'bulkhead'; reason: 'full' | 'queue-timeout' }
  | { kind: 'deadline' };

interface CallRecord {
  readonly id: number;
  readonly body: Body;
  readonly contextKind: ContextKind;
  readonly value: string;
  readonly error: Error;
  context: CallContext | undefined;
  /** Absolute deadline of a call through a TimeoutPolicy. */
  deadline: number;
  /** The duration of its TimeoutPolicy, if it goes through one. */
  timeoutMs?: number;
  /** When its queue timeout fires, if it waits. */
  queueDeadline: number;
  started: boolean;
  shouldStart: boolean;
  /** Gave up (refused, aborted or timed out) before getting a permit. */
  gaveUp: boolean;
  bodySettled: boolean;
  finishBody?: (ok: boolean) => void;
  expected: Expected | undefined;
  settled: boolean;
  result?: { ok: true; value: unknown } | { ok: false; error: unknown };
  listeners: { live: number };
}

/** What the storm needs from a bulkhead, so a deliberately broken one can be run through it. */
type Subject = Pick<BulkheadPolicy, 'run' | 'stats'>;

interface Totals {
  runs: number;
  worstRatio: number;
  permitsTaken: number;
  permitsReturned: number;
  paths: Record<string, number>;
}

const totals: Totals = { runs: 0, worstRatio: 0, permitsTaken: 0, permitsReturned: 0, paths: {} };

function hit(path: string): void {
  totals.paths[path] = (totals.paths[path] ?? 0) + 1;
}

/** Counts the abort listeners a context holds, by wrapping its `onAbort`. */
function watchListeners(context: CallContext): { live: number } {
  const original = context.onAbort.bind(context);
  const spy = { live: 0 };
  context.onAbort = (listener) => {
    spy.live++;
    let live = true;
    const drop = () => {
      if (live) {
        live = false;
        spy.live--;
      }
    };
    const remove = original((reason) => {
      drop();
      listener(reason);
    });
    return () => {
      drop();
      remove();
    };
  };
  return spy;
}

async function storm(scenario: Scenario, build: (clock: FakeClock) => Subject): Promise<void> {
  const { maxConcurrent, maxQueue, queueTimeout } = scenario;
  const clock = new FakeClock();
  const bulkhead = build(clock);
  const timeouts = new Map<number, TimeoutPolicy>();
  const calls: CallRecord[] = [];
  const violations: string[] = [];
  // The model.
  const model = { active: 0, queue: [] as CallRecord[], rejected: 0, timedOut: 0, aborted: 0 };
  let running = 0;
  let maxActive = 0;
  let started = 0;

  const check = (where: string) => {
    const stats = bulkhead.stats();
    if (stats.active > maxConcurrent) violations.push(`${where}: active ${stats.active} > ${maxConcurrent}`);
    if (stats.queued > maxQueue) violations.push(`${where}: queued ${stats.queued} > ${maxQueue}`);
    if (running > maxConcurrent) violations.push(`${where}: ${running} bodies running > ${maxConcurrent}`);
    maxActive = Math.max(maxActive, stats.active, running);
  };

  const grant = () => {
    while (model.active < maxConcurrent && model.queue.length > 0) {
      const next = model.queue.shift()!;
      next.shouldStart = true;
      startBody(next);
    }
  };
  const release = () => {
    model.active--;
    grant();
  };
  /** Model side of a body starting with a permit: synchronous bodies give it back at once. */
  const startBody = (call: CallRecord) => {
    if (call.body === 'async') {
      model.active++;
      return;
    }
    if (call.expected === undefined) {
      call.expected = call.body === 'sync-throw' ? { kind: 'error', error: call.error } : { kind: 'value', value: call.value };
    }
  };

  const makeBody = (call: CallRecord) => (): Promise<string> | string => {
    if (call.started) violations.push(`call ${call.id} started twice`);
    if (call.gaveUp) violations.push(`call ${call.id} ran after giving up`);
    call.started = true;
    started++;
    running++;
    check(`body ${call.id}`);
    if (call.body === 'sync-throw') {
      running--;
      throw call.error;
    }
    if (call.body === 'sync-value') {
      running--;
      return call.value;
    }
    return new Promise<string>((resolve, reject) => {
      call.finishBody = (ok) => {
        running--;
        call.bodySettled = true;
        if (ok) resolve(call.value);
        else reject(call.error);
      };
    });
  };

  const call = (step: Extract<Step, { t: 'call' }>) => {
    const record: CallRecord = {
      id: calls.length,
      body: step.body,
      contextKind: step.context,
      value: `value-${calls.length}`,
      error: new Error(`error-${calls.length}`),
      context: undefined,
      deadline: Infinity,
      queueDeadline: queueTimeout === undefined ? Infinity : clock.now() + queueTimeout,
      started: false,
      shouldStart: false,
      gaveUp: false,
      bodySettled: false,
      expected: undefined,
      settled: false,
      listeners: { live: 0 },
    };
    calls.push(record);
    const body = makeBody(record);
    let promise: Promise<string>;
    if (step.context === 'timeout') {
      record.deadline = clock.now() + step.timeoutMs;
      record.timeoutMs = step.timeoutMs;
      let timeout = timeouts.get(step.timeoutMs);
      if (timeout === undefined) timeouts.set(step.timeoutMs, (timeout = new TimeoutPolicy(step.timeoutMs, { clock })));
      promise = timeout.run((context) => {
        record.listeners = watchListeners(context);
        return bulkhead.run(body, context);
      }, undefined);
    } else if (step.context === 'none') {
      promise = bulkhead.run(body, undefined);
    } else {
      const context = (record.context = new CallContext());
      record.listeners = watchListeners(context);
      if (step.context === 'aborted') context.abort(record.error);
      promise = bulkhead.run(body, context);
    }
    promise.then(
      (value) => Object.assign(record, { settled: true, result: { ok: true, value } }),
      (error: unknown) => Object.assign(record, { settled: true, result: { ok: false, error } }),
    );

    // The model's decision.
    if (step.context === 'aborted') {
      record.gaveUp = true;
      record.expected = { kind: 'error', error: record.error };
      hit('already aborted');
    } else if (model.active < maxConcurrent) {
      record.shouldStart = true;
      startBody(record);
      hit(`direct ${step.body}`);
    } else if (model.queue.length < maxQueue) {
      model.queue.push(record);
      hit(step.context === 'timeout' ? 'queued via timeout' : 'queued');
    } else {
      record.gaveUp = true;
      record.expected = { kind: 'bulkhead', reason: 'full' };
      model.rejected++;
      hit('full');
    }
    return record;
  };

  for (const step of scenario.steps) {
    switch (step.t) {
      case 'call':
        call(step);
        check('after call');
        break;
      case 'settle': {
        const candidates = calls.filter((c) => c.started && c.body === 'async' && !c.bodySettled);
        if (candidates.length === 0) break;
        const target = candidates[step.pick % candidates.length]!;
        target.finishBody!(step.ok);
        target.expected ??= step.ok ? { kind: 'value', value: target.value } : { kind: 'error', error: target.error };
        release();
        hit(step.ok ? 'settle ok' : 'settle error');
        break;
      }
      case 'abort-queued': {
        const candidates = model.queue.filter((c) => c.contextKind === 'abortable');
        if (candidates.length === 0) break;
        const target = candidates[step.pick % candidates.length]!;
        const wasFull = model.queue.length === maxQueue;
        const before = bulkhead.stats().queued;
        const reason = new Error(`abort-${target.id}`);
        target.context!.abort(reason);
        // At once, before any tick: the slot is free and a new call can take it.
        const after = bulkhead.stats().queued;
        if (after !== before - 1) violations.push(`abort of queued call ${target.id} left queued at ${after} (was ${before})`);
        model.queue.splice(model.queue.indexOf(target), 1);
        model.aborted++;
        target.gaveUp = true;
        target.expected = { kind: 'error', error: reason };
        hit('abort queued');
        if (wasFull) {
          const probe = call({ t: 'call', body: 'async', context: 'abortable', timeoutMs: 0 });
          if (bulkhead.stats().queued !== maxQueue) violations.push(`probe ${probe.id} could not take the slot freed by call ${target.id}`);
          hit('slot reused at once');
        }
        break;
      }
      case 'abort-running': {
        const candidates = calls.filter((c) => c.contextKind === 'abortable' && c.started && !c.bodySettled && c.expected === undefined);
        if (candidates.length === 0) break;
        const target = candidates[step.pick % candidates.length]!;
        const reason = new Error(`abort-${target.id}`);
        target.context!.abort(reason);
        // The caller is settled now; the permit stays taken until the body settles.
        target.expected = { kind: 'error', error: reason };
        hit('abort running');
        break;
      }
      case 'advance': {
        const target = clock.now() + step.ms;
        // Releases happen only when bodies settle, so timers firing here only take waiters out of the queue.
        for (const waiter of model.queue.slice()) {
          const leaveAt = Math.min(waiter.deadline, waiter.queueDeadline);
          if (leaveAt > target) continue;
          model.queue.splice(model.queue.indexOf(waiter), 1);
          waiter.gaveUp = true;
          // Queue timeouts end in .5 ms and deadlines on whole ms: never a tie (which of two timers
          // due at once fires first depends on when the TimeoutPolicy's shared timer was last armed).
          if (waiter.deadline < waiter.queueDeadline) {
            model.aborted++;
            waiter.expected = { kind: 'deadline' };
            hit('deadline while queued');
          } else {
            model.timedOut++;
            waiter.expected = { kind: 'bulkhead', reason: 'queue-timeout' };
            hit('queue timeout');
          }
        }
        for (const c of calls) {
          if (c.expected === undefined && c.started && !c.bodySettled && c.deadline <= target) {
            c.expected = { kind: 'deadline' };
            hit('deadline while running');
          }
        }
        await clock.advanceAsync(step.ms);
        break;
      }
    }
    await flushMicrotasks();
    check(`after ${step.t}`);
    compare(`after ${step.t}`);
  }

  // Drain: settle every body still running, in order, then fire what is left on the clock.
  for (;;) {
    const pending = calls.find((c) => c.started && c.body === 'async' && !c.bodySettled);
    if (pending === undefined) break;
    pending.finishBody!(true);
    pending.expected ??= { kind: 'value', value: pending.value };
    release();
    await flushMicrotasks();
    check('drain');
    compare('drain');
  }
  // Every release above granted the next waiter, so nobody is left waiting.
  expect(model.queue).toEqual([]);
  await clock.runAllAsync();
  await flushMicrotasks();

  const final = bulkhead.stats();
  totals.runs++;
  totals.worstRatio = Math.max(totals.worstRatio, maxActive / maxConcurrent);
  totals.permitsTaken += started;
  totals.permitsReturned += started - final.active;

  expect(violations).toEqual([]);
  expect(final).toMatchObject({ active: 0, queued: 0 });
  expect(calls.filter((c) => !c.settled).map((c) => c.id)).toEqual([]);
  expect(clock.pendingTimers).toBe(0);
  expect(calls.filter((c) => c.listeners.live > 0).map((c) => c.id)).toEqual([]);

  function compare(where: string): void {
    const stats = bulkhead.stats();
    const expected: BulkheadStats = { active: model.active, queued: model.queue.length, rejected: model.rejected, timedOut: model.timedOut, aborted: model.aborted };
    if (!sameStats(stats, expected)) violations.push(`${where}: stats ${JSON.stringify(stats)}, model ${JSON.stringify(expected)}`);
    // Timers alive: one queue timer per waiter, and one per TimeoutPolicy (one per timeoutMs here) with an unsettled call.
    const timeoutPolicies = new Set(calls.filter((c) => c.contextKind === 'timeout' && !c.settled).map((c) => c.timeoutMs));
    const timers = (queueTimeout === undefined ? 0 : model.queue.length) + timeoutPolicies.size;
    if (clock.pendingTimers !== timers) violations.push(`${where}: ${clock.pendingTimers} timers pending, model ${timers}`);
    for (const c of calls) {
      if (c.started !== c.shouldStart) violations.push(`${where}: call ${c.id} started=${c.started}, model says ${c.shouldStart}`);
      if (c.settled !== (c.expected !== undefined)) violations.push(`${where}: call ${c.id} settled=${c.settled}, model expects ${JSON.stringify(c.expected)}`);
      else if (c.settled && !matches(c.result!, c.expected!)) violations.push(`${where}: call ${c.id} settled with ${show(c.result!)}, model expects ${JSON.stringify(c.expected)}`);
    }
    if (violations.length > 0) throw new Error(violations.join('\n'));
  }
}

function sameStats(a: BulkheadStats, b: BulkheadStats): boolean {
  return a.active === b.active && a.queued === b.queued && a.rejected === b.rejected && a.timedOut === b.timedOut && a.aborted === b.aborted;
}

function matches(result: NonNullable<CallRecord['result']>, expected: Expected): boolean {
  switch (expected.kind) {
    case 'value':
      return result.ok && result.value === expected.value;
    case 'error':
      return !result.ok && result.error === expected.error;
    case 'bulkhead':
      return !result.ok && isBulkheadRejectedError(result.error) && result.error.reason === expected.reason;
    case 'deadline':
      return !result.ok && isTimeoutExceededError(result.error);
  }
}

function show(result: NonNullable<CallRecord['result']>): string {
  return result.ok ? `value ${String(result.value)}` : `error ${String((result.error as Error | undefined)?.message ?? result.error)}`;
}

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      t: fc.constant('call' as const),
      body: fc.constantFrom<Body>('async', 'async', 'async', 'async', 'sync-throw', 'sync-value'),
      context: fc.constantFrom<ContextKind>('none', 'none', 'abortable', 'abortable', 'abortable', 'abortable', 'timeout', 'timeout', 'aborted'),
      timeoutMs: fc.integer({ min: 1, max: 10 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('settle' as const), pick: fc.nat(), ok: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('abort-queued' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('abort-running' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 8 }) }) },
);

const scenarioArbitrary: fc.Arbitrary<Scenario> = fc.record({
  maxConcurrent: fc.integer({ min: 1, max: 3 }),
  maxQueue: fc.integer({ min: 0, max: 4 }),
  // Half a millisecond past the whole ms deadlines fall on: see 'advance'.
  queueTimeout: fc.option(fc.integer({ min: 0, max: 20 }).map((ms) => ms + 0.5), { nil: undefined, freq: 3 }),
  steps: fc.array(stepArbitrary, { minLength: 1, maxLength: 100, size: 'medium' }),
});

const RUNS = 200;

describe('E3 bulkhead storm', () => {
  it('matches the reference model step by step and never exceeds its limits', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArbitrary, (scenario) =>
        storm(scenario, (clock) => new BulkheadPolicy({ maxConcurrent: scenario.maxConcurrent, maxQueue: scenario.maxQueue, queueTimeout: scenario.queueTimeout }, { clock })),
      ),
      { numRuns: RUNS },
    );
    const returned = (100 * totals.permitsReturned) / totals.permitsTaken;
    console.log(
      `[E3] bulkhead storm: ${totals.runs} runs, max observed active/limit = ${totals.worstRatio.toFixed(2)}, permits returned = ${returned.toFixed(0)} %`,
    );
    console.log(`[E3] paths exercised: ${Object.entries(totals.paths).map(([path, count]) => `${path} ${count}`).join(', ')}`);
    expect(totals.worstRatio).toBe(1);
    expect(totals.permitsReturned).toBe(totals.permitsTaken);
    for (const path of [
      'direct async', 'direct sync-throw', 'direct sync-value', 'already aborted', 'queued', 'queued via timeout', 'full', 'settle ok', 'settle error',
      'abort queued', 'slot reused at once', 'abort running', 'queue timeout', 'deadline while queued', 'deadline while running',
    ]) {
      expect({ path, hits: totals.paths[path] ?? 0 }).not.toEqual({ path, hits: 0 });
    }
  });

  it('control: the storm catches a bulkhead whose aborted waiters keep their queue slot', async () => {
    // The bug seen in the wild: the abort settles the caller but leaves the waiter queued until a
    // release reaches it. The same storm must find it.
    const result = await fc.check(
      fc.asyncProperty(scenarioArbitrary, (scenario) =>
        storm(scenario, (clock) => {
          const broken = new BulkheadPolicy({ maxConcurrent: scenario.maxConcurrent, maxQueue: scenario.maxQueue, queueTimeout: scenario.queueTimeout }, { clock });
          Object.assign(broken, {
            abandon(waiter: { reject(error: unknown): void; removeAbortListener: unknown }, reason: unknown) {
              waiter.removeAbortListener = undefined;
              waiter.reject(reason);
            },
          });
          return broken;
        }),
      ),
      { numRuns: RUNS },
    );
    expect(result.failed).toBe(true);
    console.log(`[E3] control (aborted waiter keeps its slot): caught after ${result.numRuns} runs: ${String(result.errorInstance).split('\n')[0]}`);
  });
});
