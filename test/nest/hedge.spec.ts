import { Injectable } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock, getAbortSignal, Hedge, ResilienceModule } from 'nest-resilience';

// @Hedge on a provider method: the first attempt is slow, a hedge starts after the delay and
// answers; the first attempt's own AbortSignal (read with getAbortSignal()) fires.

const opened: TestingModule[] = [];

afterEach(async () => {
  while (opened.length > 0) await opened.pop()!.close();
});

/** A search backend on `clock`: the first attempt of each call hangs (until aborted), the others answer after 10 ms. */
function backend(clock: FakeClock) {
  @Injectable()
  class SearchClient {
    readonly signals: Array<AbortSignal | undefined> = [];
    attempts = 0;

    @Hedge({ delay: '100ms', maxHedges: 1 })
    search(query: string): Promise<string> {
      return this.attempt(query, this.attempts === 0);
    }

    @Hedge({ delay: 100, maxHedges: 2, budget: 'search' })
    budgeted(query: string): Promise<string> {
      return this.attempt(query, this.attempts === 0);
    }

    private attempt(query: string, slow: boolean): Promise<string> {
      const attempt = ++this.attempts;
      const signal = getAbortSignal();
      this.signals.push(signal);
      return new Promise((resolve, reject) => {
        const timer = clock.setTimeout(() => resolve(`${query} from attempt ${attempt}`), slow ? 10_000 : 10);
        signal?.addEventListener('abort', () => {
          clock.clearTimeout(timer);
          reject(signal.reason);
        });
      });
    }
  }
  return SearchClient;
}

async function boot(retryBudgets = {}) {
  const clock = new FakeClock();
  const SearchClient = backend(clock);
  const moduleRef = await Test.createTestingModule({ imports: [ResilienceModule.forRoot({ clock, retryBudgets })], providers: [SearchClient] }).compile();
  opened.push(moduleRef);
  await moduleRef.init();
  return { client: moduleRef.get(SearchClient), clock };
}

describe('@Hedge on provider methods', () => {
  it('answers with the hedge and aborts the slow first attempt through its getAbortSignal()', async () => {
    const { client, clock } = await boot({ search: {} });
    const pending = client.search('shoes');
    await clock.advanceAsync(100);
    expect(client.attempts).toBe(2);
    await clock.advanceAsync(10);
    await expect(pending).resolves.toBe('shoes from attempt 2');
    expect(client.signals).toHaveLength(2);
    expect(client.signals[0]).toBeDefined();
    expect(client.signals[0]).not.toBe(client.signals[1]);
    expect(client.signals[0]!.aborted).toBe(true);
    expect(client.signals[1]!.aborted).toBe(false);
    expect(clock.pendingTimers).toBe(0);
  });

  it('starts no hedge when the named budget refuses: the slow first attempt answers', async () => {
    const { client, clock } = await boot({ search: { ratio: 0, minRetriesPerSecond: 0 } });
    const pending = client.budgeted('boots');
    await clock.advanceAsync(10_000);
    await expect(pending).resolves.toBe('boots from attempt 1');
    expect(client.attempts).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('draws hedges from the named budget when it has tokens', async () => {
    const { client, clock } = await boot({ search: { ratio: 0, minRetriesPerSecond: 1 } });
    const pending = client.budgeted('laces');
    await clock.advanceAsync(110);
    await expect(pending).resolves.toBe('laces from attempt 2');
    expect(client.attempts).toBe(2);
    expect(client.signals[0]!.aborted).toBe(true);
  });
});
