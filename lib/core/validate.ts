import { InvalidOptionError } from './errors.js';

/** Validates an integer option within bounds and returns it (or the default when undefined). */
export function integerOption(value: unknown, option: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(option, value, max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer between ${min} and ${max}`);
  }
  return value;
}

/** Validates a finite number option within bounds and returns it (or the default when undefined). */
export function numberOption(value: unknown, option: string, fallback: number, min: number, max = Infinity, { exclusiveMin = false } = {}): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (exclusiveMin && value === min) || value > max) {
    const low = exclusiveMin ? `> ${min}` : `≥ ${min}`;
    throw new InvalidOptionError(option, value, max === Infinity ? `a number ${low}` : `a number ${low} and ≤ ${max}`);
  }
  return value;
}

/** Validates an option against a fixed set of strings and returns it (or the default). */
export function enumOption<T extends string>(value: unknown, option: string, fallback: T, allowed: readonly T[]): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw new InvalidOptionError(option, value, `one of ${allowed.map((candidate) => `'${candidate}'`).join(', ')}`);
  }
  return value as T;
}

/** Validates an optional function option. */
export function functionOption<T extends Function>(value: unknown, option: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new InvalidOptionError(option, value, 'a function');
  return value as T;
}

/** Throws when `options` holds a key not in `known`: a misspelt option must not be ignored silently. */
export function rejectUnknownOptions(options: object, known: readonly string[], scope: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new InvalidOptionError(scope ? `${scope}.${key}` : key, (options as Record<string, unknown>)[key], `no such option; known options: ${known.join(', ')}`);
    }
  }
}
