import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RateLimitAlgorithm } from '../../lib/policies/rate-limit/rate-limit.options.js';
import { compileForFleet, runFleet, type CompiledLib } from './support/fleet.js';
import { fixedWindowCount } from './support/state.js';

const ALGORITHMS: readonly RateLimitAlgorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];
const PROCESSES = 4;
const INFLIGHT = 100;
const LIMIT = 20;
const WINDOW_MS = 300;
const PHASE_MS = 900;
const GAP_MS = 150;

interface PhaseResult {
  algorithm: RateLimitAlgorithm;
  /** Redis `TIME` of every admission this process was told about. */
  stamps: number[];
  acknowledged: number;
  degraded: number;
  errors: number;
  decisions: number;
}

interface WorkerResult {
  phases: PhaseResult[];
  control: { admitted: number; attempts: number };
}

/** The most admissions the algorithm allows among `stamps` (sorted), and its bound, as the docs state it. */
function worstCase(algorithm: RateLimitAlgorithm, stamps: readonly number[]): { admitted: number; bound: number; where: string } {
  if (algorithm === 'fixed-window' || algorithm === 'sliding-window-counter') {
    const perWindow = new Map<number, number>();
    for (const stamp of stamps) perWindow.set(Math.floor(stamp / WINDOW_MS), (perWindow.get(Math.floor(stamp / WINDOW_MS)) ?? 0) + 1);
    return { admitted: Math.max(0, ...perWindow.values()), bound: LIMIT, where: `per aligned window (${perWindow.size} windows)` };
  }
  if (algorithm === 'sliding-window-log') {
    let worst = 0;
    let from = 0;
    for (let to = 0; to < stamps.length; to++) {
      while (stamps[from]! <= stamps[to]! - WINDOW_MS) from++;
      worst = Math.max(worst, to - from + 1);
    }
    return { admitted: worst, bound: LIMIT, where: 'in any window (t − W, t]' };
  }
  // Token bucket and GCRA: at most burst + rate·Δ in any interval of length Δ. Report the
  // interval where admissions come closest to (or beyond) that bound.
  const rate = LIMIT / WINDOW_MS;
  let excess = -Infinity;
  let admitted = 0;
  let bound = 0;
  for (let i = 0; i < stamps.length; i++) {
    for (let j = i; j < stamps.length; j++) {
      const allowed = LIMIT + rate * (stamps[j]! - stamps[i]!);
      const count = j - i + 1;
      if (count - allowed > excess) {
        excess = count - allowed;
        admitted = count;
        bound = allowed;
      }
    }
  }
  return { admitted, bound: Math.floor(bound + 1e-6), where: 'in the tightest interval (burst + rate·Δ)' };
}

describe('R1 fleet over-admission', () => {
  let lib: CompiledLib;
  let admin: Redis;

  beforeAll(async () => {
    lib = compileForFleet();
    admin = new Redis(inject('redisUrl'), { lazyConnect: true, maxRetriesPerRequest: 0 });
    await admin.connect();
  });

  afterAll(async () => {
    lib?.dispose();
    await admin?.quit();
  });

  it(`${PROCESSES} processes × ${INFLIGHT} decisions in flight on one key: admitted ≤ limit for every algorithm; the two-round-trip control is not`, async () => {
    const prefix = `r1:${randomUUID()}:`;
    const startAt = Date.now() + 2_500;
    const phases = ALGORITHMS.map((algorithm, index) => ({
      algorithm,
      key: algorithm,
      limit: LIMIT,
      windowMs: WINDOW_MS,
      burst: LIMIT,
      startAt: startAt + index * (PHASE_MS + GAP_MS),
      durationMs: PHASE_MS,
    }));
    const controlKey = `${prefix}control`;
    const control = { key: controlKey, limit: LIMIT, startAt: startAt + ALGORITHMS.length * (PHASE_MS + GAP_MS), durationMs: 400 };
    const results = await runFleet<WorkerResult>(
      './r1-worker.mjs',
      Array.from({ length: PROCESSES }, () => ({ libUrl: lib.libUrl, ioredisUrl: lib.ioredisUrl, url: inject('redisUrl'), prefix, inflight: INFLIGHT, phases, control })),
      25_000,
    );

    for (const [index, algorithm] of ALGORITHMS.entries()) {
      const perProcess = results.map((result) => result.phases[index]!);
      const stamps = perProcess.flatMap((phase) => phase.stamps).toSorted((a, b) => a - b);
      const acknowledged = perProcess.reduce((sum, phase) => sum + phase.acknowledged, 0);
      const decisions = perProcess.reduce((sum, phase) => sum + phase.decisions, 0);
      const degraded = perProcess.reduce((sum, phase) => sum + phase.degraded + phase.errors, 0);
      const inRedis = fixedWindowCount(await admin.getBuffer(`{${prefix}${algorithm}}:audit`));
      const worst = worstCase(algorithm, stamps);
      console.log(
        `[R1] ${algorithm}: admitted ${worst.admitted} / bound ${worst.bound} ${worst.where} (ratio ${(worst.admitted / worst.bound).toFixed(2)}), ` +
          `${PROCESSES} processes × ${INFLIGHT} in flight, ${decisions} decisions in ${PHASE_MS} ms; admissions recorded by Redis ${inRedis} = acknowledged to callers ${acknowledged}`,
      );
      expect(degraded).toBe(0);
      expect(acknowledged).toBeGreaterThan(LIMIT);
      expect(worst.admitted).toBeLessThanOrEqual(worst.bound);
      expect(inRedis).toBe(acknowledged);
      expect(stamps.length).toBe(acknowledged);
    }

    const controlAdmitted = results.reduce((sum, result) => sum + result.control.admitted, 0);
    console.log(
      `[R1] control store (GET, then SET: two round trips): admitted ${controlAdmitted} / limit ${LIMIT} (${(controlAdmitted / LIMIT).toFixed(1)}×) — ` +
        `the same flood, ${results.reduce((sum, result) => sum + result.control.attempts, 0)} attempts`,
    );
    expect(controlAdmitted).toBeGreaterThan(LIMIT);
  }, 30_000);
});
