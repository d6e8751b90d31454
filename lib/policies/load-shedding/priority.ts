import { InvalidOptionError } from '../../core/errors.js';

/** A named priority: `'low'` is 0, `'normal'` 1 (the default), `'high'` 2, `'critical'` 3. */
export type PriorityLevel = 'low' | 'normal' | 'high' | 'critical';

/** The number each named priority stands for; higher matters more. */
export const PRIORITY_LEVELS: Readonly<Record<PriorityLevel, number>> = Object.freeze({ low: 0, normal: 1, high: 2, critical: 3 });

const EXPECTED = "one of 'low', 'normal', 'high', 'critical', or a finite number";

/**
 * Converts a priority as written (a level name or a finite number) to its number.
 *
 * @param option the option's name, for the error.
 * @throws InvalidOptionError when `value` is neither.
 */
export function toPriority(value: unknown, option: string): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return value;
  } else if (typeof value === 'string' && Object.hasOwn(PRIORITY_LEVELS, value)) {
    return PRIORITY_LEVELS[value as PriorityLevel];
  }
  throw new InvalidOptionError(option, value, EXPECTED);
}
