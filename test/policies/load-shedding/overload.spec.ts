import * as fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FakeClock, systemClock } from '../../../lib/core/clock.js';
import { InvalidOptionError } from '../../../lib/core/errors.js';
import { OverloadDetector, type OverloadChangeEvent, type OverloadLevel } from '../../../lib/policies/load-shedding/index.js';

/** A detector on a fake clock whose delay the test sets. */
function driven(options: { eventLoopDelay?: number; sampleInterval?: number } = {}) {
  const clock = new FakeClock();
  const probe = { delay: 0, reads: 0 };
  const detector = new OverloadDetector(
    {
      eventLoopDelay: options.eventLoopDelay ?? 100,
      sampleInterval: options.sampleInterval ?? 500,
      delaySource: () => {
        probe.reads++;
        return probe.delay;
      },
    },
    { clock },
  );
  const events: OverloadChangeEvent[] = [];
  detector.onOverload((event) => events.push(event));
  const sample = (delay: number) => {
    probe.delay = delay;
    clock.advance(detector.options.sampleInterval);
  };
  return { clock, probe, detector, events, sample };
}

/** The level the documented thresholds give to one reading, written out independently of lib/. */
function measuredLevel(delay: number, threshold: number): OverloadLevel {
  if (delay > threshold * 4) return 3;
  if (delay > threshold * 2) return 2;
  if (delay > threshold) return 1;
  return 0;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('OverloadDetector options', () => {
  it('applies the defaults', () => {
    const detector = new OverloadDetector();
    expect(detector.options).toEqual({ eventLoopDelay: 100, sampleInterval: 500, retryAfter: 1000, delaySource: undefined });
    expect(detector.retryAfterMs).toBe(1000);
    expect(Object.isFrozen(detector.options)).toBe(true);
  });

  it('resolves durations to milliseconds', () => {
    const source = Math.random;
    const detector = new OverloadDetector({ eventLoopDelay: '50ms', sampleInterval: '1s', retryAfter: '3s', delaySource: source });
    expect(detector.options).toEqual({ eventLoopDelay: 50, sampleInterval: 1000, retryAfter: 3000, delaySource: source });
    expect(detector.retryAfterMs).toBe(3000);
  });

  it.each([
    [{ eventLoopDelay: 0 }, 'eventLoopDelay'],
    [{ eventLoopDelay: '-5ms' }, 'eventLoopDelay'],
    [{ sampleInterval: 0 }, 'sampleInterval'],
    [{ sampleInterval: 0.5 }, 'sampleInterval'],
    [{ sampleInterval: 2 ** 31 }, 'sampleInterval'],
    [{ retryAfter: -1 }, 'retryAfter'],
    [{ delaySource: 42 }, 'delaySource'],
    [{ eventLoopDelai: '50ms' }, 'eventLoopDelai'],
  ])('rejects %j naming %s', (options, option) => {
    let error: unknown;
    try {
      void new OverloadDetector(options as never);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).option).toBe(option);
  });

  it('rejects options that are not an object', () => {
    expect(() => new OverloadDetector(null as never)).toThrow(InvalidOptionError);
  });
});

describe('OverloadDetector levels', () => {
  it('admits every priority until started, whatever the delay', () => {
    const { detector, probe, clock } = driven();
    probe.delay = 10_000;
    clock.advance(5_000);
    expect(probe.reads).toBe(0);
    expect(detector.level).toBe(0);
    expect(detector.admits(-1e9)).toBe(true);
  });

  it('maps the delay to levels at 1×, 2× and 4× the threshold, exclusive', () => {
    const { detector, sample } = driven({ eventLoopDelay: 50 });
    detector.start();
    const seen: Array<[number, OverloadLevel]> = [];
    // Rising readings only: the level follows each one at once.
    for (const delay of [0, 50, 50.5, 100, 101, 200, 201, 10_000]) {
      sample(delay);
      seen.push([delay, detector.level]);
    }
    expect(seen).toEqual([
      [0, 0],
      [50, 0],
      [50.5, 1],
      [100, 1],
      [101, 2],
      [200, 2],
      [201, 3],
      [10_000, 3],
    ]);
    detector.close();
  });

  it('sheds priorities below the level; critical (3) and above always run', () => {
    const { detector, sample } = driven();
    detector.start();
    const admitted = () => [-1, 0, 0.5, 1, 1.5, 2, 3, 7].filter((priority) => detector.admits(priority));
    expect(admitted()).toEqual([-1, 0, 0.5, 1, 1.5, 2, 3, 7]);
    sample(150);
    expect(admitted()).toEqual([1, 1.5, 2, 3, 7]);
    sample(250);
    expect(admitted()).toEqual([2, 3, 7]);
    sample(1_000_000);
    expect(admitted()).toEqual([3, 7]);
    detector.close();
  });

  it('rises at once and falls one level per reading, emitting each change', () => {
    const { detector, sample, events } = driven();
    detector.start();
    sample(500);
    expect(detector.level).toBe(3);
    sample(0);
    expect(detector.level).toBe(2);
    sample(0);
    expect(detector.level).toBe(1);
    sample(150);
    expect(detector.level).toBe(1);
    sample(0);
    expect(detector.level).toBe(0);
    sample(0);
    expect(events).toEqual([
      { level: 3, previous: 0, delayMs: 500 },
      { level: 2, previous: 3, delayMs: 0 },
      { level: 1, previous: 2, delayMs: 0 },
      { level: 0, previous: 1, delayMs: 0 },
    ]);
    expect(detector.delayMs).toBe(0);
    detector.close();
  });

  it('reads once per sample interval, on the clock', () => {
    const { detector, probe, clock } = driven({ sampleInterval: 200 });
    detector.start();
    clock.advance(199);
    expect(probe.reads).toBe(0);
    clock.advance(1);
    expect(probe.reads).toBe(1);
    clock.advance(1000);
    expect(probe.reads).toBe(6);
    detector.close();
  });

  it('keeps the level when the source throws or returns no usable number, warning once', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const clock = new FakeClock();
    const readings: Array<() => number> = [() => 300, () => Number.NaN, () => -1, () => { throw new Error('probe down'); }, () => 'x' as never, () => 0];
    let index = 0;
    const detector = new OverloadDetector({ sampleInterval: 10, delaySource: () => readings[index++]!() }, { clock });
    detector.start();
    const levels: number[] = [];
    for (let step = 0; step < readings.length; step++) {
      clock.advance(10);
      levels.push(detector.level);
    }
    expect(levels).toEqual([2, 2, 2, 2, 2, 1]);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toContain('delaySource returned NaN');
    detector.close();
  });

  it('start() is idempotent: one timer however often it is called', () => {
    const { detector, clock, probe } = driven({ sampleInterval: 100 });
    detector.start();
    detector.start();
    expect(clock.pendingTimers).toBe(1);
    clock.advance(100);
    expect(probe.reads).toBe(1);
    detector.close();
  });

  it('close() clears its timer, returns to level 0 with an event, is idempotent and final', () => {
    const { detector, clock, probe, sample, events } = driven();
    detector.start();
    sample(1000);
    expect(detector.level).toBe(3);
    detector.close();
    detector.close();
    expect(clock.pendingTimers).toBe(0);
    expect(detector.level).toBe(0);
    expect(detector.admits(-100)).toBe(true);
    expect(events.at(-1)).toEqual({ level: 0, previous: 3, delayMs: 1000 });
    detector.start();
    probe.delay = 1000;
    clock.advance(10_000);
    expect(clock.pendingTimers).toBe(0);
    expect(probe.reads).toBe(1);
    expect(detector.level).toBe(0);
  });

  it('a listener that throws does not stop sampling', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const { detector, sample } = driven();
    detector.onOverload(() => {
      throw new Error('listener broke');
    });
    detector.start();
    sample(150);
    sample(250);
    expect(detector.level).toBe(2);
    expect(warn).toHaveBeenCalled();
    detector.close();
  });
});

describe('OverloadDetector properties', () => {
  it('follows the reference model: up at once, down one step; admits exactly the priorities ≥ the level', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 500 }),
        fc.array(fc.double({ min: 0, max: 3000, noNaN: true }), { maxLength: 40 }),
        fc.array(fc.oneof(fc.integer({ min: -2, max: 5 }), fc.double({ min: -5, max: 6, noNaN: true })), { minLength: 1, maxLength: 10 }),
        (threshold, delays, priorities) => {
          const { detector, sample, events } = driven({ eventLoopDelay: threshold, sampleInterval: 100 });
          detector.start();
          let model: OverloadLevel = 0;
          for (const delay of delays) {
            sample(delay);
            const measured = measuredLevel(delay, threshold);
            model = measured >= model ? measured : ((model - 1) as OverloadLevel);
            expect(detector.level).toBe(model);
            for (const priority of priorities) {
              // While level n ≥ 1 says "shed below n", no call under n runs and every call from n up does.
              expect(detector.admits(priority)).toBe(model === 0 || priority >= model);
            }
          }
          // Every change was reported, in order, and each event links to the one before.
          let previous = 0;
          for (const event of events) {
            expect(event.previous).toBe(previous);
            expect(event.level).not.toBe(event.previous);
            previous = event.level;
          }
          expect(previous).toBe(model);
          detector.close();
          for (const priority of priorities) expect(detector.admits(priority)).toBe(true);
        },
      ),
    );
  });
});

function busyWait(ms: number): void {
  const start = performance.now();
  while (performance.now() - start < ms) {
    // the loop is blocked
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(condition: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) await sleep(5);
}

describe('OverloadDetector on the real event loop', () => {
  it('sees a blocked loop (busy-wait 200 ms), sheds low priority, then recovers; close() leaves no timer', async () => {
    const detector = new OverloadDetector({ eventLoopDelay: '40ms', sampleInterval: '20ms' });
    const timers = vi.spyOn(systemClock, 'setTimeout');
    const cleared = vi.spyOn(systemClock, 'clearTimeout');
    const rises: Array<{ level: number; delayMs: number; lowAdmitted: boolean; criticalAdmitted: boolean }> = [];
    detector.onOverload((event) => {
      if (event.level > event.previous) rises.push({ level: event.level, delayMs: event.delayMs, lowAdmitted: detector.admits(0), criticalAdmitted: detector.admits(3) });
    });
    detector.start();
    await sleep(60);
    busyWait(200);
    await waitFor(() => rises.length > 0, 3000);
    expect(rises[0]).toMatchObject({ lowAdmitted: false, criticalAdmitted: true });
    expect(rises[0]!.level).toBeGreaterThanOrEqual(2);
    expect(rises[0]!.delayMs).toBeGreaterThan(80);
    expect(rises[0]!.delayMs).toBeLessThan(2000);
    // The level steps back to 0 once the loop runs freely (a generous margin for a loaded machine).
    await waitFor(() => detector.level === 0, 5000);
    expect(detector.level).toBe(0);
    expect(detector.admits(0)).toBe(true);
    detector.close();
    // Every timer the detector set fired, except the last, which close() cleared; none is ref'd.
    expect(cleared).toHaveBeenCalledTimes(1);
    const last = timers.mock.results.at(-1)!.value as NodeJS.Timeout;
    expect(cleared).toHaveBeenCalledWith(last);
    expect(last.hasRef()).toBe(false);
    const setCount = timers.mock.calls.length;
    await sleep(60);
    expect(timers.mock.calls.length).toBe(setCount);
  });

  it('reads the histogram: a 150 ms block inside a 400 ms window, which the sampling timer does not see late', async () => {
    const detector = new OverloadDetector({ eventLoopDelay: '40ms', sampleInterval: '400ms' });
    const rises: OverloadChangeEvent[] = [];
    detector.onOverload((event) => {
      if (event.level > event.previous) rises.push(event);
    });
    detector.start();
    await sleep(60);
    busyWait(150);
    await waitFor(() => rises.length > 0, 3000);
    detector.close();
    expect(rises.length).toBeGreaterThan(0);
    // The block ended well before the timer was due: only the histogram can have seen it.
    expect(rises[0]!.delayMs).toBeGreaterThan(80);
    expect(rises[0]!.delayMs).toBeLessThan(1000);
  });
});
