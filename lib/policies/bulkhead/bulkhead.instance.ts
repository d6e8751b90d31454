import type { Event } from '../../core/events.js';
import type { Policy } from '../../core/policy.js';
import type { BulkheadStats } from './bulkhead.options.js';
import type { BulkheadQueueEvent, BulkheadRejectEvent, ResolvedBulkheadOptions } from './bulkhead.policy.js';

/** What every bulkhead offers, local ({@link BulkheadPolicy}) or fleet-wide (the Redis store's). */
export interface BulkheadInstance extends Policy {
  readonly name: string;
  /** The resolved options (for a fleet-wide bulkhead, `maxConcurrent` is the fleet's cap). */
  readonly options: ResolvedBulkheadOptions;
  stats(): BulkheadStats;
  readonly onReject: Event<BulkheadRejectEvent>;
  readonly onQueue: Event<BulkheadQueueEvent>;
  /** Refuses waiters and later calls; running calls finish. */
  close(): unknown;
}
