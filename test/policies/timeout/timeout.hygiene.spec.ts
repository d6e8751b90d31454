import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileLib } from '../../support/compile-lib.js';

const run = promisify(execFile);

// Runs in a child process of its own, under --unhandled-rejections=strict: a single stray
// rejection kills it, and its timers and listeners are the only ones there.
const SCRIPT = `
import { getEventListeners } from 'node:events';
import { TimeoutPolicy } from './lib/policies/timeout/timeout.policy.js';
import { isTimeoutExceededError } from './lib/policies/timeout/timeout.error.js';

const warnings = [];
process.on('warning', (warning) => warnings.push(warning.name + ': ' + warning.message));
const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
const baseline = timers();

const CALLS = 10_000;
const outer = new AbortController();
const policy = new TimeoutPolicy(5);
let timedOut = 0;
let lateSettled = 0;
const calls = [];
for (let i = 0; i < CALLS; i++) {
  calls.push(policy.execute((context) => {
    const signal = context.signal;
    const ownListener = () => {};
    signal.addEventListener('abort', ownListener, { once: true });
    return new Promise((resolve, reject) => {
      // Each task outlives its deadline, then settles: half resolve, half reject, late.
      setTimeout(() => { lateSettled++; i % 2 ? resolve(i) : reject(new Error('late ' + i)); }, 1000);
    });
  }, outer.signal).then(() => 'ok', (error) => { if (isTimeoutExceededError(error)) timedOut++; else throw error; }));
}
const peakTimers = timers();
await Promise.all(calls);
await new Promise((resolve) => setTimeout(resolve, 1100));

// Nested deadlines: the inner call must get at most what the outer one has left.
const outerPolicy = new TimeoutPolicy(200);
const innerPolicy = new TimeoutPolicy(10_000);
let innerAllowed = Infinity;
let outerRemaining = 0;
await outerPolicy.execute(async (outerContext) => {
  await new Promise((resolve) => setTimeout(resolve, 50));
  outerRemaining = outerContext.remaining(performance.now());
  await innerPolicy.execute(async (innerContext) => { innerAllowed = innerContext.remaining(performance.now()); });
});

console.log(JSON.stringify({
  calls: CALLS, timedOut, lateSettled, baseline, peakTimers, after: timers(),
  outerListeners: getEventListeners(outer.signal, 'abort').length,
  warnings, innerAllowed, outerRemaining,
}));
`;

describe('E4 timeout hygiene (child process, --unhandled-rejections=strict)', () => {
  let lib: ReturnType<typeof compileLib>;
  beforeAll(() => {
    lib = compileLib();
    writeFileSync(join(lib.dir, 'e4.mjs'), SCRIPT);
  });
  afterAll(() => lib.dispose());

  it('10,000 timed-out calls leave no timer, no listener, no warning and no unhandled rejection', async () => {
    const { stdout } = await run(process.execPath, ['--unhandled-rejections=strict', 'e4.mjs'], { cwd: lib.dir, timeout: 60_000 });
    const report = JSON.parse(stdout.trim().split('\n').pop()!);
    console.log(
      `[E4] timeout hygiene: ${report.timedOut}/${report.calls} timed out, timers ${report.baseline} → peak ${report.peakTimers} → ${report.after}, ` +
        `abort listeners left ${report.outerListeners}, warnings ${report.warnings.length}, inner deadline ${report.innerAllowed.toFixed(1)} ms ≤ outer remaining ${report.outerRemaining.toFixed(1)} ms`,
    );
    expect(report.timedOut).toBe(10_000);
    expect(report.lateSettled).toBe(10_000);
    expect(report.peakTimers).toBeGreaterThan(report.baseline);
    expect(report.after).toBe(report.baseline);
    expect(report.outerListeners).toBe(0);
    expect(report.warnings).toEqual([]);
    expect(report.innerAllowed).toBeLessThanOrEqual(report.outerRemaining);
  });
});
