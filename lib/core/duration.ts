import { InvalidOptionError } from './errors.js';

/** A duration: milliseconds as a number, or a string such as `'500ms'`, `'2s'`, `'1m'`, `'1h'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

/** The longest delay Node's timers can hold (2³¹−1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/;

/**
 * Converts a {@link Duration} to milliseconds, throwing an {@link InvalidOptionError} that names
 * the option when the value is malformed, negative, not finite, or (when `timer` is set)
 * longer than a Node timer can hold.
 */
export function toMilliseconds(value: unknown, option: string, { allowZero = true, timer = false } = {}): number {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else if (typeof value === 'string') {
    const match = DURATION_PATTERN.exec(value);
    if (!match) throw new InvalidOptionError(option, value, "a number of milliseconds or a string such as '500ms', '2s', '1m', '1h'");
    ms = Number(match[1]) * UNIT_MS[match[2]!]!;
  } else {
    throw new InvalidOptionError(option, value, "a number of milliseconds or a string such as '500ms', '2s', '1m', '1h'");
  }
  if (!Number.isFinite(ms) || ms < 0 || (!allowZero && ms === 0)) {
    throw new InvalidOptionError(option, value, allowZero ? 'a finite duration ≥ 0' : 'a finite duration > 0');
  }
  if (timer && ms > MAX_TIMER_MS) {
    throw new InvalidOptionError(option, value, `a duration ≤ ${MAX_TIMER_MS} ms (2^31-1, the longest delay a timer can hold)`);
  }
  return ms;
}
