export { type HedgeOptions, type HedgePercentileDelay } from './hedge.options.js';
export { HedgePolicy, type HedgeEvent, type HedgeStats, type ResolvedHedgeOptions } from './hedge.policy.js';
