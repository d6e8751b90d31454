import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { compileForFleet, runFleet, type CompiledLib } from './support/fleet.js';

const SKEW_MS = 30_000;
const LIMIT = 10;
const WINDOW_MS = 500;
const FLOOD_MS = 800;

interface RunResult {
  admitted: number;
  degraded: number;
  /** Redis `TIME` of each admission. */
  stamps: number[];
  peek: { allowed: boolean; retryAfterMs: number; resetMs: number };
}

/** The interval where admissions come closest to `burst + rate·Δ` (excess ≤ 0: within the bound). */
function worstExcess(stamps: readonly number[]): { excess: number; admitted: number; bound: number } {
  const rate = LIMIT / WINDOW_MS;
  let worst = { excess: -Infinity, admitted: 0, bound: 0 };
  for (let i = 0; i < stamps.length; i++) {
    for (let j = i; j < stamps.length; j++) {
      const bound = LIMIT + rate * (stamps[j]! - stamps[i]!);
      if (j - i + 1 - bound > worst.excess) worst = { excess: j - i + 1 - bound, admitted: j - i + 1, bound };
    }
  }
  return worst;
}

describe('R2 clock skew', () => {
  let lib: CompiledLib;
  let ahead: RunResult[];
  let behind: RunResult[];

  beforeAll(async () => {
    lib = compileForFleet();
    const prefix = `r2:${randomUUID()}:`;
    const start = Date.now() + 1_500;
    const runs = [
      { algorithm: 'token-bucket', useAppClock: false },
      { algorithm: 'gcra', useAppClock: false },
      { algorithm: 'gcra', useAppClock: true },
    ].map((run, index) => ({ ...run, key: `shared-${index}`, floodStart: start + index * (FLOOD_MS + 250), peekAt: start + index * (FLOOD_MS + 250) + FLOOD_MS + 100 }));
    const base = { libUrl: lib.libUrl, url: inject('redisUrl'), prefix, limit: LIMIT, windowMs: WINDOW_MS, inflight: 20, floodMs: FLOOD_MS, runs };
    const results = await runFleet<{ skewMs: number; results: RunResult[] }>('./r2-worker.mjs', [{ ...base, skewMs: +SKEW_MS }, { ...base, skewMs: -SKEW_MS }], 20_000);
    ahead = results[0]!.results;
    behind = results[1]!.results;
  }, 25_000);

  afterAll(() => {
    lib?.dispose();
  });

  it.each([
    ['token-bucket', 0],
    ['gcra', 1],
  ] as const)('two processes with clocks 60 s apart share a %s within its bound and report the same reset and Retry-After', (algorithm, index) => {
    const a = ahead[index]!;
    const b = behind[index]!;
    const worst = worstExcess([...a.stamps, ...b.stamps].toSorted((x, y) => x - y));
    const resetGap = Math.abs(a.peek.resetMs - b.peek.resetMs);
    const retryGap = Math.abs(a.peek.retryAfterMs - b.peek.retryAfterMs);
    console.log(
      `[R2] ${algorithm}, Redis TIME, app clocks +30 s / −30 s: admitted ${worst.admitted} in the tightest interval / bound ${worst.bound.toFixed(1)} (burst + rate·Δ), ` +
        `${a.admitted} + ${b.admitted} admitted; reset differs by ${resetGap.toFixed(1)} ms, Retry-After by ${retryGap.toFixed(1)} ms`,
    );
    expect(a.degraded + b.degraded).toBe(0);
    expect(a.admitted).toBeGreaterThan(0);
    expect(b.admitted).toBeGreaterThan(0);
    expect(worst.excess).toBeLessThanOrEqual(1e-6);
    expect(a.peek.allowed).toBe(false);
    expect(b.peek.allowed).toBe(false);
    expect(resetGap).toBeLessThanOrEqual(1_000);
    expect(retryGap).toBeLessThanOrEqual(1_000);
  });

  it('control: the same script on the application clocks reports resets a minute apart (GCRA)', () => {
    const a = ahead[2]!;
    const b = behind[2]!;
    const resetGap = Math.abs(a.peek.resetMs - b.peek.resetMs);
    const retryGap = Math.abs((a.peek.retryAfterMs ?? 0) - (b.peek.retryAfterMs ?? 0));
    console.log(`[R2] control, gcra on the app clocks inside the script: reset differs by ${(resetGap / 1000).toFixed(1)} s, Retry-After by ${(retryGap / 1000).toFixed(1)} s`);
    expect(Math.max(resetGap, retryGap)).toBeGreaterThan(1_000);
  });
});
