import { InvalidOptionError } from './errors.js';

/** An error class (matched with `instanceof`) or a predicate over the error. */
// oxlint-disable-next-line no-explicit-any
export type ErrorMatcher = (abstract new (...args: any[]) => unknown) | ((error: unknown) => boolean);

/**
 * Compiles one matcher or a list into a single predicate. A function whose prototype is an
 * `Error` (or `Error` itself) is treated as a class; any other function as a predicate.
 */
export function compileMatchers(matchers: ErrorMatcher | readonly ErrorMatcher[] | undefined, option: string): ((error: unknown) => boolean) | undefined {
  if (matchers === undefined) return undefined;
  const list = Array.isArray(matchers) ? matchers : [matchers];
  const predicates = list.map((matcher, index): ((error: unknown) => boolean) => {
    if (typeof matcher !== 'function') {
      throw new InvalidOptionError(Array.isArray(matchers) ? `${option}[${index}]` : option, matcher, 'an error class or a predicate (error) => boolean');
    }
    if (isErrorClass(matcher)) return (error) => error instanceof matcher;
    return matcher as (error: unknown) => boolean;
  });
  if (predicates.length === 1) return predicates[0];
  return (error) => predicates.some((predicate) => predicate(error));
}

function isErrorClass(fn: Function): boolean {
  return fn === Error || (fn.prototype !== undefined && fn.prototype instanceof Error);
}
