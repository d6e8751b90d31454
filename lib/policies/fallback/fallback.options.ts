import type { ErrorMatcher } from '../../core/matchers.js';

/** Computes a substitute result from the error and the original call's arguments. */
export type FallbackHandler<T = unknown> = (error: unknown, ...args: unknown[]) => T | PromiseLike<T>;

/** Options of a fallback policy: a handler or a value, and which errors it handles. */
export type FallbackOptions<T = unknown> =
  | { handler: FallbackHandler<T>; handles?: ErrorMatcher | ErrorMatcher[] }
  | { value: T; handles?: ErrorMatcher | ErrorMatcher[] };
