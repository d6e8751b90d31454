import type { Event } from '../../core/events.js';
import type { Policy } from '../../core/policy.js';
import type { BulkheadStats } from './bulkhead.options.js';
import type { BulkheadQueueEvent, BulkheadRejectEvent, ResolvedBulkheadOptions } from './bulkhead.policy.js';

/** What every bulkhead offers, local ({@link BulkheadPolicy}) or fleet-wide (the Redis store's). */
export interface BulkheadInstance extends Policy {
  /** The name in events, errors, metrics and the registry. */
  readonly name: string;
  /** The resolved options (for a fleet-wide bulkhead, `maxConcurrent` is the fleet's cap). */
  readonly options: ResolvedBulkheadOptions;
  /** The counters: running, queued, refused, timed out, aborted. */
  stats(): BulkheadStats;
  /** Subscribes to refusals (`full`, `queue-timeout`, `displaced`, `closed`). */
  readonly onReject: Event<BulkheadRejectEvent>;
  /** Subscribes to calls entering the queue. */
  readonly onQueue: Event<BulkheadQueueEvent>;
  /** Refuses waiters and later calls; running calls finish. */
  close(): unknown;
}
