export { BulkheadPolicy, type BulkheadQueueEvent, type BulkheadRejectEvent, type ResolvedBulkheadOptions } from './bulkhead.policy.js';
export { BulkheadRejectedError, isBulkheadRejectedError, type BulkheadRejectReason } from './bulkhead.error.js';
export { type BulkheadOptions, type BulkheadStats } from './bulkhead.options.js';
export type { BulkheadInstance } from './bulkhead.instance.js';
