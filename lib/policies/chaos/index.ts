export { ChaosPolicy, type ChaosInjectEvent } from './chaos.policy.js';
export { ChaosInjectedError, ChaosNotAllowedError, isChaosInjectedError, isChaosNotAllowedError } from './chaos.error.js';
export {
  type ChaosAbortOptions,
  type ChaosDependencies,
  type ChaosErrorOptions,
  type ChaosFault,
  type ChaosLatencyOptions,
  type ChaosModuleOptions,
  type ChaosOptions,
  type ChaosStats,
} from './chaos.options.js';
