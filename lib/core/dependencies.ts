import type { Clock } from './clock.js';

/** What an engine gets from outside besides its options. Every field is optional. */
export interface PolicyDependencies {
  /** The time source. @default systemClock */
  clock?: Clock;
  /** Uniform random numbers in [0, 1), for jitter. @default Math.random */
  random?: () => number;
}

/** Whether a policy enforces its decisions or only reports them. */
export type PolicyMode = 'enforce' | 'shadow';
