import { systemClock, type Clock } from '../../core/clock.js';
import { currentContext } from '../../core/context.js';
import { enumOption, rejectUnknownOptions } from '../../core/validate.js';
import { DEADLINE_FORMATS, DEFAULT_DEADLINE_HEADER, headerOption, type DeadlineFormat, type DeadlineHeaderOptions } from './deadline.options.js';

// gRPC's TimeoutValue is at most 8 digits; the unit is hours down to nanoseconds.
const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const GRPC_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
const GRPC_MAX_VALUE = 99_999_999;
// Bounded digit counts: a value of a thousand digits must not become a number at all.
const TIMEOUT_MS = /^\d{1,15}(?:\.\d{1,6})?$/;
const EPOCH_MS = /^\d{1,16}$/;

/**
 * Reads a deadline header's value: the milliseconds left at `nowEpochMs` (0 or less when the
 * deadline has passed), or `undefined` when the value is not in `format` (a malformed header is
 * ignored, not an error: a request must not fail because a caller's header is garbled).
 *
 * @param nowEpochMs the wall-clock time, for `'epoch-ms'`. @default Date.now()
 */
export function parseDeadline(value: string, format: DeadlineFormat, nowEpochMs = Date.now()): number | undefined {
  switch (format) {
    case 'timeout-ms':
      return TIMEOUT_MS.test(value) ? Number(value) : undefined;
    case 'epoch-ms':
      return EPOCH_MS.test(value) ? Number(value) - nowEpochMs : undefined;
    case 'grpc-timeout': {
      const match = GRPC_TIMEOUT.exec(value);
      return match === null ? undefined : Number(match[1]) * GRPC_UNIT_MS[match[2]!]!;
    }
  }
}

/**
 * Writes the time left as a deadline header's value in `format`. Rounds down to the format's
 * precision: the callee must never believe it has more time than the caller will wait.
 *
 * @param nowEpochMs the wall-clock time, for `'epoch-ms'`. @default Date.now()
 */
export function formatDeadline(remainingMs: number, format: DeadlineFormat, nowEpochMs = Date.now()): string {
  const remaining = remainingMs > 0 ? remainingMs : 0;
  switch (format) {
    case 'timeout-ms':
      return String(Math.floor(remaining));
    case 'epoch-ms':
      return String(Math.floor(nowEpochMs + remaining));
    case 'grpc-timeout':
      return formatGrpcTimeout(remaining);
  }
}

/** gRPC's `grpc-timeout`: the finest unit, from microseconds to hours, whose value fits 8 digits. */
function formatGrpcTimeout(ms: number): string {
  // gRPC wants a positive value; "0n" is what grpc-go sends for a deadline already passed.
  if (ms === 0) return '0n';
  if (ms < 1) return `${Math.floor(ms * 1000)}u`;
  if (ms <= GRPC_MAX_VALUE) return `${Math.floor(ms)}m`;
  if (ms / 1000 <= GRPC_MAX_VALUE) return `${Math.floor(ms / 1000)}S`;
  if (ms / 60_000 <= GRPC_MAX_VALUE) return `${Math.floor(ms / 60_000)}M`;
  return `${Math.min(GRPC_MAX_VALUE, Math.floor(ms / 3_600_000))}H`;
}

interface HeaderSettings {
  readonly header: string;
  readonly format: DeadlineFormat;
  readonly clock: Clock;
}

const DEFAULT_SETTINGS: HeaderSettings = { header: DEFAULT_DEADLINE_HEADER, format: 'timeout-ms', clock: systemClock };

function headerSettings(options: DeadlineHeaderOptions | undefined): HeaderSettings {
  if (options === undefined) return DEFAULT_SETTINGS;
  rejectUnknownOptions(options, ['header', 'format', 'clock'], '');
  return {
    header: headerOption(options.header, 'header'),
    format: enumOption(options.format, 'format', 'timeout-ms', DEADLINE_FORMATS),
    clock: options.clock ?? systemClock,
  };
}

/**
 * The header that tells a downstream service how long the call in progress may still take:
 * `{ 'x-request-deadline': '240' }` inside a call with a deadline (a `@Timeout`, or a request
 * that brought one), `{}` outside.
 *
 * @throws InvalidOptionError when an option cannot work.
 * @example
 * await this.http.get(url, { headers: { ...deadlineHeaders(), accept: 'application/json' } });
 */
export function deadlineHeaders(options?: DeadlineHeaderOptions): Record<string, string> {
  const settings = headerSettings(options);
  const context = currentContext();
  if (context === undefined || context.deadline === Infinity) return {};
  return { [settings.header]: formatDeadline(context.remaining(settings.clock.now()), settings.format) };
}

/**
 * `fetch` options for a call made inside a call with a deadline: `init` with the deadline header
 * added and the call's `AbortSignal` (combined with `init.signal`, if any, through
 * `AbortSignal.any`), so the request is cancelled when the call's deadline passes or it is
 * aborted. Outside such a call, `init` itself (`{}` without one).
 *
 * @throws InvalidOptionError when an option cannot work.
 * @example
 * \@Timeout('300ms')
 * async quote() {
 *   return (await fetch(`${PRICING}/quote`, withDeadline({ headers: { accept: 'application/json' } }))).json();
 * }
 */
export function withDeadline(init: RequestInit = {}, options?: DeadlineHeaderOptions): RequestInit {
  const settings = headerSettings(options);
  const context = currentContext();
  if (context === undefined) return init;
  const stamped: RequestInit = { ...init, signal: combine(init.signal, context.signal) };
  if (context.deadline !== Infinity) {
    const headers = new Headers(init.headers);
    headers.set(settings.header, formatDeadline(context.remaining(settings.clock.now()), settings.format));
    stamped.headers = headers;
  }
  return stamped;
}

/** What {@link deadlineAxiosInterceptor} touches of an axios request config (axios is not a dependency). */
interface AxiosLikeConfig {
  // oxlint-disable-next-line no-explicit-any
  headers?: any;
  // oxlint-disable-next-line no-explicit-any
  signal?: any;
}

/**
 * An axios request interceptor (for `@nestjs/axios`'s `HttpService.axiosRef` or any axios
 * instance) that stamps the deadline header and the call's `AbortSignal` on each request made
 * inside a call with a deadline; other requests pass unchanged. Options are checked once, here.
 *
 * @throws InvalidOptionError when an option cannot work.
 * @example
 * constructor(http: HttpService) {
 *   http.axiosRef.interceptors.request.use(deadlineAxiosInterceptor());
 * }
 */
export function deadlineAxiosInterceptor(options?: DeadlineHeaderOptions): <C extends AxiosLikeConfig>(config: C) => C {
  const { header, format, clock } = headerSettings(options);
  return <C extends AxiosLikeConfig>(config: C): C => {
    const context = currentContext();
    if (context === undefined) return config;
    const target = config as AxiosLikeConfig;
    // A caller's signal that is not a real AbortSignal (axios accepts look-alikes) cannot be combined: it is kept.
    if (target.signal == null || target.signal instanceof AbortSignal) target.signal = combine(target.signal, context.signal);
    if (context.deadline !== Infinity) {
      const value = formatDeadline(context.remaining(clock.now()), format);
      const headers = target.headers;
      // axios ≥ 1 hands interceptors an AxiosHeaders (with `set`); older versions a plain object.
      if (headers == null) target.headers = { [header]: value };
      else if (typeof headers.set === 'function') headers.set(header, value);
      else headers[header] = value;
    }
    return config;
  };
}

function combine(own: AbortSignal | null | undefined, call: AbortSignal): AbortSignal {
  return own == null || own === call ? call : AbortSignal.any([own, call]);
}
