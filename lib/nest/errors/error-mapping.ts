import { GatewayTimeoutException, HttpException, HttpStatus, ServiceUnavailableException, type ExecutionContext } from '@nestjs/common';
import { isOperationAbortedError, suspendStackCapture } from '../../core/errors.js';
import { isBulkheadRejectedError } from '../../policies/bulkhead/bulkhead.error.js';
import { isCircuitOpenError } from '../../policies/circuit-breaker/circuit-breaker.error.js';
import { isLoadShedError } from '../../policies/load-shedding/load-shedding.error.js';
import { isRateLimitExceededError } from '../../policies/rate-limit/rate-limit.error.js';
import { isTimeoutExceededError } from '../../policies/timeout/timeout.error.js';
import { isStoreUnavailableError } from '../../stores/store.errors.js';
import { contextKind, setHeader } from '../context/execution-context.util.js';

/** 429 Too Many Requests, in Nest's default error shape. */
export class TooManyRequestsException extends HttpException {
  /**
   * @param message the response body's `message`.
   * @param options `cause`: the error behind it (a `RateLimitExceededError`).
   */
  constructor(message = 'Too Many Requests', options?: { cause?: unknown }) {
    super({ message, error: 'Too Many Requests', statusCode: HttpStatus.TOO_MANY_REQUESTS }, HttpStatus.TOO_MANY_REQUESTS, options);
  }
}

/** The `Retry-After` header value for a delay: whole seconds, at least 1 (RFC 9110). */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** Exception classes of optional Nest packages, when the application has them. */
export interface TransportExceptions {
  RpcException?: new (error: string | object) => Error;
  WsException?: new (error: string | object) => Error;
}

/** How one of our errors reads for a client: status, title, delay. `undefined` for errors that are not ours. */
export function describeRejection(error: unknown): { status: number; title: string; retryAfterMs?: number } | undefined {
  if (isRateLimitExceededError(error)) return { status: 429, title: 'Too Many Requests', retryAfterMs: error.retryAfterMs };
  if (isCircuitOpenError(error)) return { status: 503, title: 'Service Unavailable', retryAfterMs: error.retryAfterMs };
  if (isBulkheadRejectedError(error)) return { status: 503, title: 'Service Unavailable' };
  if (isLoadShedError(error)) return { status: 503, title: 'Service Unavailable', retryAfterMs: error.retryAfterMs };
  if (isTimeoutExceededError(error)) return { status: 504, title: 'Gateway Timeout' };
  // The store could not decide and the limit fails closed: the service is unavailable, not the client over its limit.
  if (isStoreUnavailableError(error)) return { status: 503, title: 'Service Unavailable', retryAfterMs: error.retryAfterMs };
  // Calls we abort: the application is shutting down.
  if (isOperationAbortedError(error)) return { status: 503, title: 'Service Unavailable' };
  return undefined;
}

/**
 * The default mapping: in HTTP, 429 with `Retry-After` for a rate limit, 503 (with `Retry-After`
 * when known) for an open circuit, a full bulkhead, a call shed under overload or a call aborted
 * by shutdown, 504 for a
 * timeout; in RPC and WebSocket handlers the transport's own exception carrying
 * `{ status, error, message, retryAfter }`; in GraphQL an error with `extensions` (`code`,
 * `http.status`, `retryAfter`), which graphql-js copies into the response. Anything else is
 * returned unchanged.
 */
export function mapError(error: unknown, context: ExecutionContext, transports: TransportExceptions): unknown {
  const rejection = describeRejection(error);
  if (rejection === undefined) return error;
  // What answers the client carries no stack trace (its header only): it would show only this
  // function and Nest's internals, and capturing one costs more than the rest of a refused request.
  const limit = suspendStackCapture();
  let answer: unknown;
  try {
    answer = answerTo(error as Error, rejection, context, transports);
  } finally {
    Error.stackTraceLimit = limit;
  }
  if (answer instanceof Error && answer.stack === undefined) answer.stack = `${answer.name}: ${answer.message}`;
  return answer;
}

function answerTo(error: Error, rejection: { status: number; title: string; retryAfterMs?: number }, context: ExecutionContext, transports: TransportExceptions): unknown {
  const message = error.message;
  const retryAfter = rejection.retryAfterMs === undefined ? undefined : retryAfterSeconds(rejection.retryAfterMs);
  const kind = contextKind(context);
  if (kind === 'http') {
    // The response: what `switchToHttp().getResponse()` returns, without the object it builds.
    if (retryAfter !== undefined) setHeader(context.getArgByIndex(1), 'Retry-After', String(retryAfter));
    if (rejection.status === 429) return new TooManyRequestsException(message, { cause: error });
    // Nest 11 adds the `error` title to the body only when it is given; Nest 12 adds it by default.
    if (rejection.status === 503) return new ServiceUnavailableException(message, { cause: error, description: rejection.title });
    return new GatewayTimeoutException(message, { cause: error, description: rejection.title });
  }
  const payload = { status: rejection.status, error: rejection.title, message, ...(retryAfter === undefined ? {} : { retryAfter }) };
  if (kind === 'rpc' && transports.RpcException) return new transports.RpcException(payload);
  if (kind === 'ws' && transports.WsException) return new transports.WsException(payload);
  if (kind === 'graphql') {
    const code = rejection.status === 429 ? 'TOO_MANY_REQUESTS' : rejection.status === 503 ? 'SERVICE_UNAVAILABLE' : 'GATEWAY_TIMEOUT';
    return Object.assign(new Error(message, { cause: error }), {
      extensions: { code, http: { status: rejection.status }, ...(retryAfter === undefined ? {} : { retryAfter }) },
    });
  }
  return error;
}
