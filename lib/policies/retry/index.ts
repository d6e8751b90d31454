export { baseDelay, decorrelatedDelay, nextDelay, type BackoffSettings } from './backoff.js';
export { type BackoffKind, type JitterKind, type RetryOptions } from './retry.options.js';
export {
  RetryPolicy,
  type ResolvedRetryOptions,
  type RetryEvent,
  type RetryGiveUpEvent,
  type RetryGiveUpReason,
} from './retry.policy.js';
export { RetryBudget, type ResolvedRetryBudgetOptions, type RetryBudgetInstance, type RetryBudgetOptions, type RetryBudgetStats } from './retry-budget.js';
