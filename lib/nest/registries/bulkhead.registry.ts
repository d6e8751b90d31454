import { Injectable } from '@nestjs/common';
import type { BulkheadInstance, BulkheadStats } from '../../policies/bulkhead/index.js';
import { NamedRegistry } from './named-registry.js';

/** The live bulkheads of the application: one per named policy, one per class and method with inline options. */
@Injectable()
export class BulkheadRegistry extends NamedRegistry<BulkheadInstance> {
  protected readonly kind = 'bulkhead';

  /** Every bulkhead with its counters (active, queued, rejected, timed out, aborted). */
  list(): Array<{ name: string } & BulkheadStats> {
    return [...this.items].map(([name, bulkhead]) => ({ name, ...bulkhead.stats() }));
  }
}
