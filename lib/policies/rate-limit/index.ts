export {
  RateLimitPolicy,
  type RateLimitDependencies,
  type RateLimitDecisionEvent,
  type RateLimitStats,
  type ResolvedRateLimitOptions,
} from './rate-limit.policy.js';
export { RateLimitExceededError, isRateLimitExceededError } from './rate-limit.error.js';
export type { LimitState, RateLimitAlgorithm, RateLimitDecision, RateLimitOptions, StoreFailurePolicy } from './rate-limit.options.js';
