import { Injectable } from '@nestjs/common';
import type { BulkheadPolicy, BulkheadStats } from '../../policies/bulkhead/index.js';
import { registryMessages } from './registry.messages.js';

/** The live bulkheads of the application: one per named policy, one per class and method with inline options. */
@Injectable()
export class BulkheadRegistry {
  private readonly bulkheads = new Map<string, BulkheadPolicy>();

  /** @throws Error naming the known bulkheads when there is none of that name. */
  get(name: string): BulkheadPolicy {
    const bulkhead = this.bulkheads.get(name);
    if (bulkhead === undefined) throw new Error(registryMessages.notFound('bulkhead', name, [...this.bulkheads.keys()]));
    return bulkhead;
  }

  /** Whether a bulkhead of that name exists. */
  has(name: string): boolean {
    return this.bulkheads.has(name);
  }

  /** Every bulkhead with its counters (active, queued, rejected, timed out, aborted). */
  list(): Array<{ name: string } & BulkheadStats> {
    return [...this.bulkheads].map(([name, bulkhead]) => ({ name, ...bulkhead.stats() }));
  }

  /** Adds or replaces a bulkhead (the module does this). */
  register(name: string, bulkhead: BulkheadPolicy): void {
    this.bulkheads.set(name, bulkhead);
  }

  /** Every bulkhead, for shutdown. */
  all(): IterableIterator<BulkheadPolicy> {
    return this.bulkheads.values();
  }
}
