export { LoadSheddingPolicy, type LoadShedEvent, type LoadSheddingPolicyOptions, type PriorityFunction } from './load-shedding.policy.js';
export { LoadShedError, isLoadShedError } from './load-shedding.error.js';
export type { LoadSheddingOptions } from './load-shedding.options.js';
export { OverloadDetector, type OverloadChangeEvent, type OverloadLevel, type ResolvedLoadSheddingOptions } from './overload.js';
export { PRIORITY_LEVELS, toPriority, type PriorityLevel } from './priority.js';
