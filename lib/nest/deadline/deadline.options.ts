import type { Clock } from '../../core/clock.js';
import { toMilliseconds, type Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { enumOption, rejectUnknownOptions } from '../../core/validate.js';

/**
 * How a deadline travels in a header: `'timeout-ms'` the milliseconds left (`"250"`),
 * `'epoch-ms'` the absolute Unix time in milliseconds (`"1767225600250"`, needs synchronised
 * clocks), `'grpc-timeout'` gRPC's time left (`"250m"`, `"2S"`: digits then `H M S m u n`).
 */
export type DeadlineFormat = 'timeout-ms' | 'epoch-ms' | 'grpc-timeout';

/** The formats {@link DeadlineFormat} allows, in the order error messages list them. */
export const DEADLINE_FORMATS: readonly DeadlineFormat[] = ['timeout-ms', 'epoch-ms', 'grpc-timeout'];

/** The header a deadline travels in unless told otherwise. */
export const DEFAULT_DEADLINE_HEADER = 'x-request-deadline';

/**
 * The module's `deadline` option: read a caller's deadline from a request header and bound the
 * whole request by it, so every `@Timeout` inside gives up no later than the caller does.
 */
export interface DeadlinePropagationOptions {
  /** The request header that carries the deadline (case-insensitive). @default 'x-request-deadline' */
  header?: string;
  /**
   * How the header's value reads: the time left (`'timeout-ms'`), an absolute Unix time in
   * milliseconds (`'epoch-ms'`) or gRPC's notation (`'grpc-timeout'`). A relative format needs no
   * synchronised clocks between services. @default 'timeout-ms'
   */
  format?: DeadlineFormat;
  /**
   * The longest deadline a caller may set: a longer one is cut to it (at most 2³¹−1 ms).
   * @default no cap (an incoming deadline can only shorten the request's own timeouts)
   */
  maxDeadline?: Duration;
  /**
   * What a request whose deadline has already passed gets: `'reject'` answers 504 Gateway
   * Timeout at once, before guards and handler run; `'ignore'` runs it as if it carried no
   * deadline (for callers whose clocks drift, with `'epoch-ms'`). @default 'reject'
   */
  onExpired?: 'reject' | 'ignore';
}

/** Options of the helpers that stamp a call's remaining time on an outgoing request. */
export interface DeadlineHeaderOptions {
  /** The header to write. @default 'x-request-deadline' */
  header?: string;
  /** How to write the time left (see {@link DeadlineFormat}). @default 'timeout-ms' */
  format?: DeadlineFormat;
  /** The clock the policies use, on which deadlines are measured (a FakeClock in tests). @default systemClock */
  clock?: Clock;
}

/** {@link DeadlinePropagationOptions} checked, with defaults applied. Internal. */
export interface ResolvedDeadlinePropagationOptions {
  /** Lower case, as Node exposes request headers. */
  readonly header: string;
  /** How the header reads. */
  readonly format: DeadlineFormat;
  /** `Infinity` without a cap. */
  readonly maxDeadlineMs: number;
  /** What an expired deadline gets. */
  readonly onExpired: 'reject' | 'ignore';
}

// RFC 9110 `token`: what a field name may be.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Validates a header name option and returns it (or the default when undefined). */
export function headerOption(value: unknown, option: string): string {
  if (value === undefined) return DEFAULT_DEADLINE_HEADER;
  if (typeof value !== 'string' || !HEADER_NAME.test(value)) throw new InvalidOptionError(option, value, 'an HTTP header name such as "x-request-deadline"');
  return value;
}

/**
 * Checks the module's `deadline` option and applies the defaults.
 *
 * @throws InvalidOptionError naming the option when it cannot work or is unknown.
 */
export function resolveDeadlinePropagationOptions(options: DeadlinePropagationOptions): ResolvedDeadlinePropagationOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('', options, 'an object of deadline propagation options');
  rejectUnknownOptions(options, ['header', 'format', 'maxDeadline', 'onExpired'], '');
  return {
    header: headerOption(options.header, 'header').toLowerCase(),
    format: enumOption(options.format, 'format', 'timeout-ms', DEADLINE_FORMATS),
    maxDeadlineMs: options.maxDeadline === undefined ? Infinity : toMilliseconds(options.maxDeadline, 'maxDeadline', { allowZero: false, timer: true }),
    onExpired: enumOption(options.onExpired, 'onExpired', 'reject', ['reject', 'ignore'] as const),
  };
}
