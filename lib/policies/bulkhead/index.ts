export { BulkheadPolicy, type BulkheadQueueEvent, type BulkheadRejectEvent, type ResolvedBulkheadOptions } from './bulkhead.policy.js';
export { BulkheadRejectedError, isBulkheadRejectedError, type BulkheadRejectReason } from './bulkhead.error.js';
export { type BulkheadOptions, type BulkheadStats } from './bulkhead.options.js';
export type { BulkheadInstance } from './bulkhead.instance.js';
export { AdaptiveBulkheadPolicy, type AdaptiveBulkheadOptions, type BulkheadLimitChangeEvent } from './adaptive-bulkhead.policy.js';
export {
  AdaptiveLimit,
  AimdLimit,
  GradientLimit,
  createAdaptiveLimit,
  resolveAdaptiveLimitOptions,
  type AdaptiveAlgorithm,
  type AdaptiveLimitOptions,
  type ResolvedAdaptiveLimitOptions,
} from './adaptive-limit.js';
