import type { ErrorMatcher } from '../../core/matchers.js';

/** Computes a substitute result from the error and the original call's arguments. */
export type FallbackHandler<T = unknown> = (error: unknown, ...args: unknown[]) => T | PromiseLike<T>;

/** Options of a fallback policy: a handler or a value, and which errors it handles. */
export type FallbackOptions<T = unknown> =
  | {
      /** Computes the substitute from the error and the call's arguments; may be async. */
      handler: FallbackHandler<T>;
      /** Only errors matching one of these are replaced (classes or predicates). @default every error */
      handles?: ErrorMatcher | ErrorMatcher[];
    }
  | {
      /** The substitute itself. */
      value: T;
      /** Only errors matching one of these are replaced (classes or predicates). @default every error */
      handles?: ErrorMatcher | ErrorMatcher[];
    };
