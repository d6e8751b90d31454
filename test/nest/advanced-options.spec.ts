import { Injectable, type Provider } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { describe, expect, it } from 'vitest';
import {
  Bulkhead,
  Chaos,
  FakeClock,
  Hedge,
  InvalidOptionError,
  Priority,
  ResilienceModule,
  ResilienceRegistry,
  Retry,
  type ResilienceModuleOptions,
} from 'nest-resilience';

// Bad options of the decorators and module options beyond the six patterns fail the application's
// start, naming where they were written, the option and the value; a named policy's new patterns
// are validated like the others, at bootstrap and on a run-time update.

/** Builds and starts a testing module; returns the error it fails with. */
async function bootError(providers: Provider[], options: ResilienceModuleOptions = {}): Promise<InvalidOptionError> {
  let moduleRef;
  let failure: unknown;
  try {
    moduleRef = await Test.createTestingModule({ imports: [ResilienceModule.forRoot({ clock: new FakeClock(), ...options })], providers }).compile();
    await moduleRef.init();
  } catch (error) {
    failure = error;
  }
  await moduleRef?.close().catch(() => undefined);
  expect(failure).toBeInstanceOf(InvalidOptionError);
  return failure as InvalidOptionError;
}

describe('options beyond the six patterns, checked at bootstrap', () => {
  it('@Hedge: a bad maxHedges names the class, the method, the option and the value', async () => {
    @Injectable()
    class Search {
      @Hedge({ delay: '50ms', maxHedges: 0 })
      async find(): Promise<void> {}
    }
    const error = await bootError([Search]);
    expect(error.where).toBe('@Hedge on Search.find');
    expect(error.option).toBe('hedge.maxHedges');
    expect(error.value).toBe(0);
  });

  it('@Hedge: a budget the module does not declare lists the ones it does', async () => {
    @Injectable()
    class Search {
      @Hedge({ delay: 10, budget: 'search' })
      async find(): Promise<void> {}
    }
    const error = await bootError([Search], { retryBudgets: { reads: {} } });
    expect(error.where).toBe('@Hedge on Search.find');
    expect(error.option).toBe('hedge.budget');
    expect(error.message).toContain('reads');
  });

  it('@Chaos: a rate above 1 is refused', async () => {
    @Injectable()
    class Flaky {
      @Chaos({ error: { rate: 1.5 } })
      async call(): Promise<void> {}
    }
    const error = await bootError([Flaky]);
    expect(error.where).toBe('@Chaos on Flaky.call');
    expect(error.option).toBe('chaos.error.rate');
  });

  it('@Priority: an unknown level is refused when the decorator is applied', () => {
    expect(() => Priority('urgent' as never)).toThrow(InvalidOptionError);
    expect(() => Priority('urgent' as never)).toThrow(/urgent/);
  });

  it('@Bulkhead({ adaptive }): not with maxConcurrent, nor with distributed', async () => {
    @Injectable()
    class Fixed {
      @Bulkhead({ maxConcurrent: 5, adaptive: { algorithm: 'aimd' } })
      async call(): Promise<void> {}
    }
    const fixed = await bootError([Fixed]);
    expect(fixed.where).toBe('@Bulkhead on Fixed.call');
    expect(fixed.option).toBe('bulkhead.maxConcurrent');

    @Injectable()
    class Fleet {
      @Bulkhead({ distributed: true, adaptive: {} })
      async call(): Promise<void> {}
    }
    expect((await bootError([Fleet])).option).toBe('bulkhead.adaptive');
  });

  it('retryBudgets: a bad ratio, and distributed without a fleet store', async () => {
    const ratio = await bootError([], { retryBudgets: { reads: { ratio: -1 } } });
    expect(ratio.where).toBe('ResilienceModule.forRoot');
    expect(ratio.option).toBe('retryBudgets.reads.ratio');
    const distributed = await bootError([], { retryBudgets: { reads: { distributed: true } } });
    expect(distributed.option).toBe('retryBudgets.reads.distributed');
    expect(distributed.message).toContain('RedisStore');
  });

  it('loadShedding and deadline: bad durations name the module option', async () => {
    const shedding = await bootError([], { loadShedding: { eventLoopDelay: 'soon' as never } });
    expect(shedding.option).toBe('loadShedding.eventLoopDelay');
    const deadline = await bootError([], { deadline: { format: 'seconds' as never } });
    expect(deadline.option).toBe('deadline.format');
  });

  it('@Retry({ budget }) with inline options builds a budget of its own; bad ones are refused', async () => {
    @Injectable()
    class Reads {
      @Retry({ maxAttempts: 3, budget: { ratio: 2000 } })
      async call(): Promise<void> {}
    }
    const error = await bootError([Reads]);
    expect(error.where).toBe('@Retry on Reads.call');
    expect(error.option).toBe('retry.budget.ratio');
  });

  it('a named policy\'s hedge and chaos are validated at bootstrap and on update, and an invalid update changes nothing', async () => {
    const named = await bootError([], { policies: { search: { hedge: { maxHedges: -1 } } } });
    expect(named.where).toBe('ResilienceModule.forRoot: policy "search"');
    expect(named.option).toBe('hedge.maxHedges');

    const moduleRef = await Test.createTestingModule({
      imports: [ResilienceModule.forRoot({ clock: new FakeClock(), policies: { search: { hedge: { delay: '20ms' }, chaos: { enabled: false, latency: { rate: 0.1, delay: '1s' } } } } })],
    }).compile();
    await moduleRef.init();
    const registry = moduleRef.get(ResilienceRegistry);
    expect(() => registry.update('search', { chaos: { error: { rate: 2 } } })).toThrow(InvalidOptionError);
    expect(registry.get('search').chaos).toEqual({ enabled: false, latency: { rate: 0.1, delay: '1s' } });
    expect(registry.update('search', { hedge: { maxHedges: 2 } }).hedge).toEqual({ delay: '20ms', maxHedges: 2 });
    await moduleRef.close();
  });
});
