import type { Duration } from '../../core/duration.js';

/** Options of a bulkhead. */
export interface BulkheadOptions {
  /** Name used in events, errors and metrics. @default 'default' */
  name?: string;
  /** Calls running at once (an integer ≥ 1). @default 10 */
  maxConcurrent?: number;
  /** Calls waiting for a permit (an integer ≥ 0); beyond it calls are refused at once. @default 0 */
  maxQueue?: number;
  /**
   * How long a call may wait in the queue (at most 2³¹−1 ms); `0` lets it wait only for permits
   * released before the next timer tick. @default no limit (the call's deadline still applies)
   */
  queueTimeout?: Duration;
}

/** A bulkhead's counters. */
export interface BulkheadStats {
  /** Permits taken: calls whose function has not settled yet (including calls whose caller gave up). */
  active: number;
  /** Calls waiting for a permit. */
  queued: number;
  /** Calls refused because the bulkhead and its queue were full, or displaced from the full queue by a call of higher priority. */
  rejected: number;
  /** Calls that gave up waiting in the queue (queue timeout). */
  timedOut: number;
  /** Calls that left the queue because they were aborted (caller or deadline). */
  aborted: number;
}
