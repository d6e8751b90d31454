import { describe, expect, it } from 'vitest';
import { CallContext, NO_CONTEXT } from '../../../lib/core/context.js';
import { InvalidOptionError } from '../../../lib/core/errors.js';
import { FallbackPolicy, type FallbackEvent, type FallbackOptions } from '../../../lib/policies/fallback/index.js';

class NotFoundError extends Error {}
class UpstreamError extends Error {}

function withEvents<F>(options: FallbackOptions<F>): { policy: FallbackPolicy<F>; events: FallbackEvent[] } {
  const policy = new FallbackPolicy(options);
  const events: FallbackEvent[] = [];
  policy.onFallback((event) => events.push(event));
  return { policy, events };
}

const handler = () => 1;

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('FallbackPolicy options', () => {
  it('resolves a value or a handler', () => {
    const byValue = new FallbackPolicy({ value: 42 });
    expect(byValue.options).toEqual({ handler: undefined, value: 42, handles: undefined });
    const byHandler = new FallbackPolicy({ handler, handles: NotFoundError });
    expect(byHandler.options.handler).toBe(handler);
    expect(byHandler.options.handles?.(new NotFoundError())).toBe(true);
    expect(byHandler.options.handles?.(new UpstreamError())).toBe(false);
  });

  it.each([
    [{}, 'handler'],
    [{ handles: NotFoundError }, 'handler'],
    [{ handler: () => 1, value: 1 }, 'value'],
    [{ handler: 'useCache' }, 'handler'],
    [{ value: 1, handles: 'NotFoundError' }, 'handles'],
    [{ value: 1, handels: NotFoundError }, 'handels'],
  ])('rejects %o naming %s', (options, option) => {
    const caught = catchError(() => new FallbackPolicy(options as unknown as FallbackOptions));
    expect(caught).toBeInstanceOf(InvalidOptionError);
    expect((caught as InvalidOptionError).option).toBe(option);
  });

  it('rejects a non-object', () => {
    expect(() => new FallbackPolicy(undefined as unknown as FallbackOptions)).toThrow(InvalidOptionError);
  });

  it('accepts undefined as the fallback value', async () => {
    const policy = new FallbackPolicy({ value: undefined });
    await expect(policy.execute(() => Promise.reject(new Error('x')))).resolves.toBeUndefined();
  });
});

describe('FallbackPolicy', () => {
  it('returns the original result on success without calling the handler or emitting', async () => {
    let handled = 0;
    const { policy, events } = withEvents({ handler: () => ++handled });
    await expect(policy.execute(async () => 'fresh')).resolves.toBe('fresh');
    await expect(policy.execute(() => 'sync')).resolves.toBe('sync');
    expect(handled).toBe(0);
    expect(events).toEqual([]);
  });

  it('substitutes the value for a failure', async () => {
    const { policy, events } = withEvents({ value: 'default' });
    const error = new UpstreamError('down');
    await expect(policy.execute(() => Promise.reject(error))).resolves.toBe('default');
    expect(events).toEqual([{ error }]);
  });

  it('handles a synchronous throw', async () => {
    const { policy } = withEvents({ value: 'default' });
    const result = policy.execute(() => {
      throw new UpstreamError('before any await');
    });
    expect(result).toBeInstanceOf(Promise);
    await expect(result).resolves.toBe('default');
  });

  it('passes the error and the call arguments to the handler', async () => {
    const calls: unknown[][] = [];
    const policy = new FallbackPolicy({
      handler: (...received: unknown[]) => {
        calls.push(received);
        return `cached:${String(received[1])}`;
      },
    });
    const error = new UpstreamError();
    await expect(policy.run(() => Promise.reject(error), undefined, ['user-7', { fresh: true }])).resolves.toBe('cached:user-7');
    expect(calls).toEqual([[error, 'user-7', { fresh: true }]]);
    await policy.execute(() => Promise.reject(error));
    expect(calls[1]).toEqual([error]);
  });

  it('awaits an asynchronous handler', async () => {
    const policy = new FallbackPolicy({ handler: async (_error: unknown, id: unknown) => ({ id, stale: true }) });
    await expect(policy.run(() => Promise.reject(new Error()), undefined, [3])).resolves.toEqual({ id: 3, stale: true });
  });

  it('passes the context to the task', async () => {
    const policy = new FallbackPolicy({ value: 0 });
    const seen: CallContext[] = [];
    await policy.execute((ctx) => void seen.push(ctx));
    const context = new CallContext();
    await policy.execute((ctx) => void seen.push(ctx), context);
    expect(seen).toEqual([NO_CONTEXT, context]);
    expect(seen[1]).toBe(context);
  });

  const handled: Array<[FallbackOptions['handles'], unknown]> = [
    [NotFoundError, new NotFoundError()],
    [(error) => (error as { status?: number }).status === 503, Object.assign(new Error(), { status: 503 })],
    [[NotFoundError, UpstreamError], new UpstreamError()],
  ];
  const passedThrough: Array<[FallbackOptions['handles'], unknown]> = [
    [NotFoundError, new UpstreamError()],
    [(error) => (error as { status?: number }).status === 503, Object.assign(new Error(), { status: 500 })],
    [[NotFoundError, UpstreamError], 'a string'],
  ];

  it.each(handled)('handles what `handles` matches (%o)', async (handles, error) => {
    const { policy, events } = withEvents({ value: 'fallback', handles });
    await expect(policy.execute(() => Promise.reject(error))).resolves.toBe('fallback');
    expect(events).toEqual([{ error }]);
  });

  it.each(passedThrough)('re-throws unchanged what `handles` does not match (%o)', async (handles, error) => {
    const { policy, events } = withEvents({ value: 'fallback', handles });
    await expect(policy.execute(() => Promise.reject(error))).rejects.toBe(error);
    expect(events).toEqual([]);
  });

  it('surfaces the handler’s own error, thrown or rejected, not the original', async () => {
    const original = new UpstreamError('original');
    const thrown = new Error('cache down');
    const sync = new FallbackPolicy({
      handler: () => {
        throw thrown;
      },
    });
    await expect(sync.execute(() => Promise.reject(original))).rejects.toBe(thrown);
    const rejected = new Error('cache timed out');
    const async = new FallbackPolicy({ handler: () => Promise.reject(rejected) });
    await expect(async.execute(() => Promise.reject(original))).rejects.toBe(rejected);
  });

  it('does not replace the error of a call its caller aborted', async () => {
    const { policy, events } = withEvents({ value: 'fallback' });
    const context = new CallContext();
    const error = new Error('aborted work');
    await expect(
      policy.execute((ctx) => {
        ctx.abort(new Error('client gone'));
        return Promise.reject(error);
      }, context),
    ).rejects.toBe(error);

    const controller = new AbortController();
    const pending = policy.execute(
      (ctx) =>
        new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        }),
      controller.signal,
    );
    controller.abort();
    await expect(pending).rejects.toBe(controller.signal.reason);
    expect(events).toEqual([]);
  });

  it('still falls back when only an inner scope was aborted', async () => {
    const { policy } = withEvents({ value: 'fallback' });
    const context = new CallContext();
    await expect(
      policy.execute((ctx) => {
        const attempt = new CallContext(ctx);
        attempt.abort(new Error('attempt timed out'));
        return Promise.reject(attempt.abortReason);
      }, context),
    ).resolves.toBe('fallback');
  });
});
