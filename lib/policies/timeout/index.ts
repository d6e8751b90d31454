export { TimeoutPolicy, type TimeoutEvent } from './timeout.policy.js';
export { TimeoutExceededError, isTimeoutExceededError } from './timeout.error.js';
export type { TimeoutOptions } from './timeout.options.js';
