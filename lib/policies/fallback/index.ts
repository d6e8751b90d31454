export { type FallbackHandler, type FallbackOptions } from './fallback.options.js';
export { FallbackPolicy, type FallbackEvent, type ResolvedFallbackOptions } from './fallback.policy.js';
