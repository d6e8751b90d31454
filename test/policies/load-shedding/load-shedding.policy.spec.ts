import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from '../../../lib/core/clock.js';
import { CallContext, NO_CONTEXT } from '../../../lib/core/context.js';
import { InvalidOptionError, isResilienceError, retryAfterOf } from '../../../lib/core/errors.js';
import { isPolicyRejection } from '../../../lib/core/rejection.js';
import {
  isLoadShedError,
  LoadShedError,
  LoadSheddingPolicy,
  OverloadDetector,
  PRIORITY_LEVELS,
  toPriority,
  type LoadShedEvent,
  type PriorityLevel,
} from '../../../lib/policies/load-shedding/index.js';
import { RetryPolicy } from '../../../lib/policies/retry/retry.policy.js';
import { TimeoutPolicy } from '../../../lib/policies/timeout/timeout.policy.js';

/** A started detector on a fake clock, held at `level` by its delay source. */
function detectorAt(level: 0 | 1 | 2 | 3, retryAfter = 1000) {
  const clock = new FakeClock();
  const probe = { delay: [0, 150, 250, 450][level]! };
  const detector = new OverloadDetector({ eventLoopDelay: 100, sampleInterval: 100, retryAfter, delaySource: () => probe.delay }, { clock });
  detector.start();
  clock.advance(100);
  const setLevel = (next: 0 | 1 | 2 | 3) => {
    // Falling one step per reading: read until the level is reached.
    probe.delay = [0, 150, 250, 450][next]!;
    for (let step = 0; step < 3 && detector.level !== next; step++) clock.advance(100);
  };
  return { clock, detector, setLevel };
}

/** The priority the task saw. */
const seenPriority = (context: CallContext) => context.priority;

/** The error `fn` throws (`undefined` when it returns). */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

async function outcome<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  try {
    return { value: await promise };
  } catch (error) {
    return { error };
  }
}

describe('priorities', () => {
  it('names four levels, 0 to 3', () => {
    expect(PRIORITY_LEVELS).toEqual({ low: 0, normal: 1, high: 2, critical: 3 });
    expect(Object.isFrozen(PRIORITY_LEVELS)).toBe(true);
  });

  it('toPriority takes a level name or a finite number', () => {
    expect(['low', 'normal', 'high', 'critical'].map((level) => toPriority(level, 'p'))).toEqual([0, 1, 2, 3]);
    expect(toPriority(-2.5, 'p')).toBe(-2.5);
    expect(toPriority(10, 'p')).toBe(10);
  });

  it.each([['urgent'], ['toString'], ['1'], [Number.NaN], [Infinity], [null], [undefined], [{}]])('toPriority rejects %j naming the option', (value) => {
    const error = thrownBy(() => toPriority(value, 'priority'));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).option).toBe('priority');
  });
});

describe('LoadSheddingPolicy options', () => {
  it('resolves a fixed priority at construction', () => {
    expect(new LoadSheddingPolicy({ priority: 'high' }).priority).toBe(2);
    expect(new LoadSheddingPolicy({ priority: 7 }).priority).toBe(7);
    expect(new LoadSheddingPolicy({}).priority).toBeUndefined();
    expect(new LoadSheddingPolicy({ priority: () => 'low' }).priority).toBeUndefined();
  });

  it.each([
    [{ priority: 'urgent' }, 'priority'],
    [{ priority: Number.NaN }, 'priority'],
    [{ priority: null }, 'priority'],
    [{ priorty: 'low' }, 'priorty'],
  ])('rejects %j naming %s', (options, option) => {
    const error = thrownBy(() => new LoadSheddingPolicy(options as never));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect((error as InvalidOptionError).option).toBe(option);
  });

  it('rejects options that are not an object', () => {
    expect(() => new LoadSheddingPolicy(null as never)).toThrow(InvalidOptionError);
  });
});

describe('LoadSheddingPolicy without a detector', () => {
  it('gives the task a context with the priority, inheriting the rest from the parent', async () => {
    const policy = new LoadSheddingPolicy({ priority: 'low' });
    const parent = new CallContext(undefined, 5000);
    let seen: CallContext | undefined;
    await policy.run((context) => {
      seen = context;
    }, parent);
    expect(seen).not.toBe(parent);
    expect(seen!.priority).toBe(0);
    expect(seen!.deadline).toBe(5000);
    expect(await policy.execute(seenPriority)).toBe(0);
  });

  it('never sheds, whatever the priority', async () => {
    const policy = new LoadSheddingPolicy({ priority: -1000 });
    expect(await policy.execute(() => 'ran')).toBe('ran');
  });

  it('reuses the parent context when the priority is the same', async () => {
    const parent = new CallContext(undefined, Infinity, 2);
    let seen: CallContext | undefined;
    await new LoadSheddingPolicy({ priority: 'high' }).run((context) => {
      seen = context;
    }, parent);
    expect(seen).toBe(parent);
    await new LoadSheddingPolicy({}).run((context) => {
      seen = context;
    }, parent);
    expect(seen).toBe(parent);
    await new LoadSheddingPolicy({}).run((context) => {
      seen = context;
    }, undefined);
    expect(seen).toBe(NO_CONTEXT);
  });

  it('a parent abort reaches the task while it runs; once settled, the child is detached from the parent', async () => {
    const policy = new LoadSheddingPolicy({ priority: 'critical' });
    const parent = new CallContext();
    let running: CallContext | undefined;
    let release!: () => void;
    const pending = policy.run(
      (context) => {
        running = context;
        return new Promise<void>((resolve) => (release = resolve));
      },
      parent,
    );
    await flushMicrotasks();
    const reason = new Error('caller gone');
    const aborting = new CallContext();
    const abortingRun = policy.run(async (context) => {
      aborting.abort(reason);
      return context.aborted ? context.abortReason : 'not aborted';
    }, aborting);
    expect(await abortingRun).toBe(reason);
    release();
    await pending;
    // Detached: a later abort of the long-lived parent no longer reaches the finished call.
    parent.abort(new Error('later'));
    expect(running!.aborted).toBe(false);
  });

  it('detaches the child after a synchronous value, a rejection and a synchronous throw', async () => {
    const policy = new LoadSheddingPolicy({ priority: 'low' });
    const children: CallContext[] = [];
    const parent = new CallContext();
    expect(await policy.run((context) => (children.push(context), 'sync'), parent)).toBe('sync');
    const rejected = await outcome(policy.run((context) => (children.push(context), Promise.reject(new Error('async'))), parent));
    expect((rejected.error as Error).message).toBe('async');
    const thrown = await outcome(
      policy.run((context) => {
        children.push(context);
        throw new Error('sync throw');
      }, parent),
    );
    expect((thrown.error as Error).message).toBe('sync throw');
    const thenable = await policy.run((context) => {
      children.push(context);
      return { then: (resolve: (value: string) => void) => resolve('thenable') } as PromiseLike<string>;
    }, parent);
    expect(thenable).toBe('thenable');
    parent.abort();
    expect(children.map((child) => child.aborted)).toEqual([false, false, false, false]);
  });

  it('takes the priority from a function of the call arguments, once per call', async () => {
    const calls: unknown[][] = [];
    const policy = new LoadSheddingPolicy({
      priority: (...args: unknown[]) => {
        calls.push(args);
        return args[0] as PriorityLevel;
      },
    });
    expect(await policy.run(seenPriority, undefined, ['high', 'x'])).toBe(2);
    expect(await policy.execute(seenPriority, undefined, ['low'])).toBe(0);
    expect(calls).toEqual([['high', 'x'], ['low']]);
  });

  it('a function returning undefined keeps the enclosing priority', async () => {
    const policy = new LoadSheddingPolicy({ priority: () => undefined });
    expect(await policy.run(seenPriority, new CallContext(undefined, Infinity, 2), [])).toBe(2);
    expect(await policy.run(seenPriority, undefined)).toBe(1);
  });

  it('a function returning something else, or throwing, rejects the call without running it', async () => {
    let ran = 0;
    const task = () => ran++;
    const bad = await outcome(new LoadSheddingPolicy({ priority: () => 'urgent' as never }).run(task, undefined, []));
    expect(bad.error).toBeInstanceOf(InvalidOptionError);
    expect((bad.error as InvalidOptionError).message).toContain('"urgent"');
    const broken = new Error('no header');
    const thrown = await outcome(
      new LoadSheddingPolicy({
        priority: () => {
          throw broken;
        },
      }).run(task, undefined, []),
    );
    expect(thrown.error).toBe(broken);
    expect(ran).toBe(0);
  });
});

describe('LoadSheddingPolicy with a detector', () => {
  it('sheds a call below the level with LoadShedError, without running it', async () => {
    const { detector } = detectorAt(2, 2500);
    let ran = 0;
    const result = await outcome(new LoadSheddingPolicy({ priority: 'normal' }, detector).execute(() => ran++));
    expect(ran).toBe(0);
    const error = result.error as LoadShedError;
    expect(error).toBeInstanceOf(LoadShedError);
    expect(isLoadShedError(error)).toBe(true);
    expect(isLoadShedError(new Error('x'))).toBe(false);
    expect(isResilienceError(error)).toBe(true);
    expect(isPolicyRejection(error)).toBe(true);
    expect({ priority: error.priority, retryAfterMs: error.retryAfterMs, level: error.level }).toEqual({ priority: 1, retryAfterMs: 2500, level: 2 });
    expect(retryAfterOf(error)).toBe(2500);
    expect(error.stack).toBe(`LoadShedError: ${error.message}`);
    detector.close();
  });

  it('admits calls at or above the level', async () => {
    const { detector } = detectorAt(2);
    expect(await new LoadSheddingPolicy({ priority: 'high' }, detector).execute(() => 'high ran')).toBe('high ran');
    expect(await new LoadSheddingPolicy({ priority: 'critical' }, detector).execute(() => 'critical ran')).toBe('critical ran');
    detector.close();
  });

  it('judges the inherited priority when the policy sets none', async () => {
    const { detector } = detectorAt(1);
    const policy = new LoadSheddingPolicy({}, detector);
    expect(await policy.run(() => 'ran', new CallContext(undefined, Infinity, 1))).toBe('ran');
    expect(isLoadShedError((await outcome(policy.run(() => 'ran', new CallContext(undefined, Infinity, 0)))).error)).toBe(true);
    detector.close();
  });

  it('judges the priority a function returns, per call', async () => {
    const { detector } = detectorAt(1);
    const policy = new LoadSheddingPolicy({ priority: (header?: string) => (header === 'vip' ? 'high' : 'low') }, detector);
    expect(await policy.run(seenPriority, undefined, ['vip'])).toBe(2);
    expect(isLoadShedError((await outcome(policy.run(seenPriority, undefined, ['anonymous']))).error)).toBe(true);
    detector.close();
  });

  it('emits onShed only for shed calls', async () => {
    const { detector } = detectorAt(3);
    const policy = new LoadSheddingPolicy({ priority: (priority: number) => priority }, detector);
    const events: LoadShedEvent[] = [];
    const subscription = policy.onShed((event) => events.push(event));
    for (const priority of [0, 3, 2.5, 4]) await outcome(policy.run(() => undefined, undefined, [priority]));
    expect(events).toEqual([
      { priority: 0, level: 3, delayMs: 450 },
      { priority: 2.5, level: 3, delayMs: 450 },
    ]);
    subscription.dispose();
    await outcome(policy.run(() => undefined, undefined, [0]));
    expect(events).toHaveLength(2);
    detector.close();
  });

  it('admits everything once the detector is closed', async () => {
    const { detector } = detectorAt(3);
    detector.close();
    expect(await new LoadSheddingPolicy({ priority: -5 }, detector).execute(() => 'ran')).toBe('ran');
  });

  it('a retry does not retry a shed call', async () => {
    const { detector } = detectorAt(1);
    let attempts = 0;
    const shedding = new LoadSheddingPolicy({ priority: 'low' }, detector);
    const retry = new RetryPolicy({ maxAttempts: 3, delay: 0 });
    const result = await outcome(
      retry.execute((context) => {
        attempts++;
        return shedding.run(() => 'ran', context);
      }),
    );
    expect(isLoadShedError(result.error)).toBe(true);
    expect(attempts).toBe(1);
    detector.close();
  });

  it('layers inside read the priority: a timeout inside keeps it and bounds the call', async () => {
    const clock = new FakeClock();
    const timeout = new TimeoutPolicy('1s', { clock });
    const policy = new LoadSheddingPolicy({ priority: 'high' });
    let seen: CallContext | undefined;
    await policy.execute((context) =>
      timeout.run((inner) => {
        seen = inner;
      }, context),
    );
    expect(seen!.priority).toBe(2);
    expect(seen!.deadline).toBe(1000);
  });
});

describe('LoadSheddingPolicy properties', () => {
  it('while the level sheds below n, no call under n runs and every call from n up does, with its priority', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom<0 | 1 | 2 | 3>(0, 1, 2, 3), fc.oneof(fc.constantFrom<PriorityLevel>('low', 'normal', 'high', 'critical'), fc.double({ min: -3, max: 6, noNaN: true }))), {
          minLength: 1,
          maxLength: 30,
        }),
        async (steps) => {
          const { detector, setLevel } = detectorAt(0);
          const policy = new LoadSheddingPolicy({ priority: (priority: PriorityLevel | number) => priority }, detector);
          const parent = new CallContext();
          for (const [level, written] of steps) {
            setLevel(level);
            expect(detector.level).toBe(level);
            const priority = typeof written === 'number' ? written : PRIORITY_LEVELS[written];
            let ran = false;
            const result = await outcome(
              policy.run(
                (context) => {
                  ran = true;
                  return context.priority;
                },
                parent,
                [written],
              ),
            );
            const admitted = level === 0 || priority >= level;
            expect(ran).toBe(admitted);
            expect(result).toEqual(admitted ? { value: priority } : { error: new LoadShedError(priority, 1000, level) });
          }
          detector.close();
        },
      ),
    );
  });
});
