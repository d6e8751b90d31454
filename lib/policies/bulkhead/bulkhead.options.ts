import type { Duration } from '../../core/duration.js';

/** Options of a bulkhead. */
export interface BulkheadOptions {
  /** Name used in events, errors and metrics. @default 'default' */
  name?: string;
  /** Calls running at once. @default 10 */
  maxConcurrent?: number;
  /** Calls waiting for a permit; beyond it calls are refused at once. @default 0 */
  maxQueue?: number;
  /** How long a call may wait in the queue. @default no limit (the call's deadline still applies) */
  queueTimeout?: Duration;
}

/** A bulkhead's counters. */
export interface BulkheadStats {
  active: number;
  queued: number;
  /** Calls refused because the bulkhead and its queue were full. */
  rejected: number;
  /** Calls that gave up waiting in the queue (queue timeout). */
  timedOut: number;
  /** Calls that left the queue because they were aborted (caller or deadline). */
  aborted: number;
}
