import { GatewayTimeoutException, HttpException, ServiceUnavailableException } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { RpcException } from '@nestjs/microservices';
import { describe, expect, it } from 'vitest';
import {
  BulkheadRejectedError,
  CircuitOpenError,
  InvalidOptionError,
  isBulkheadRejectedError,
  isCircuitOpenError,
  isPolicyRejection,
  isRateLimitExceededError,
  isResilienceError,
  isTimeoutExceededError,
  RateLimitExceededError,
  ResilienceError,
  TimeoutExceededError,
  TooManyRequestsException,
} from 'nest-resilience';
import { mapError } from '../../lib/nest/errors/error-mapping.js';

// Refusals and timeouts are built on hot paths: they capture no stack frames (a stack of 10
// frames cost more than the rest of a refused request), and neither do the exceptions the
// default mapping answers them with. Everything else about them stays as it was.

const decision = { allowed: false, retryAfterMs: 1_200, limits: [] };

function httpContext(headers: Record<string, string> = {}): ExecutionContextHost {
  const context = new ExecutionContextHost([{}, { header: (name: string, value: string) => (headers[name] = value) }]);
  context.setType('http');
  return context;
}

/** Builds `make()` a few calls deep, so that a captured stack would have frames to show. */
function nested<T>(make: () => T, depth = 5): T {
  return depth === 0 ? make() : nested(make, depth - 1);
}

interface Case {
  error: () => ResilienceError;
  type: abstract new (...args: never[]) => ResilienceError;
  guard: (error: unknown) => boolean;
  fields: Record<string, unknown>;
}

describe('rejection errors without stack frames', () => {
  const cases: Case[] = [
    { error: () => new RateLimitExceededError('login', decision), type: RateLimitExceededError, guard: isRateLimitExceededError, fields: { limiter: 'login', retryAfterMs: 1_200, decision } },
    { error: () => new CircuitOpenError('payments', 'OPEN', 2_500), type: CircuitOpenError, guard: isCircuitOpenError, fields: { breaker: 'payments', state: 'OPEN', retryAfterMs: 2_500 } },
    { error: () => new BulkheadRejectedError('reports', 'full', 3, 4), type: BulkheadRejectedError, guard: isBulkheadRejectedError, fields: { bulkhead: 'reports', reason: 'full', active: 3, queued: 4 } },
    { error: () => new TimeoutExceededError(250), type: TimeoutExceededError, guard: isTimeoutExceededError, fields: { timeoutMs: 250 } },
  ];

  it.each(cases)('$type.name keeps its class, name, message and fields; its stack is its header alone', ({ error, type, guard, fields }) => {
    const limit = Error.stackTraceLimit;
    const built = nested(error);
    expect(Error.stackTraceLimit).toBe(limit);
    expect(built).toBeInstanceOf(type);
    expect(built).toBeInstanceOf(ResilienceError);
    expect(built).toBeInstanceOf(Error);
    expect(guard(built)).toBe(true);
    expect(isResilienceError(built)).toBe(true);
    expect(built.name).toBe(type.name);
    expect(built.message).not.toBe('');
    expect(built).toMatchObject(fields);
    expect(built.stack).toBe(`${type.name}: ${built.message}`);
    expect(String(built)).toBe(`${type.name}: ${built.message}`);
  });

  it('policy refusals stay marked as refusals; a timeout is not one', () => {
    expect(isPolicyRejection(new RateLimitExceededError('a', decision))).toBe(true);
    expect(isPolicyRejection(new CircuitOpenError('b', 'OPEN', 1))).toBe(true);
    expect(isPolicyRejection(new BulkheadRejectedError('c', 'full', 1, 0))).toBe(true);
    expect(isPolicyRejection(new TimeoutExceededError(1))).toBe(false);
  });

  it('errors off the hot paths keep their stack frames', () => {
    const invalid = nested(() => new InvalidOptionError('limit', 0, 'an integer ≥ 1'));
    expect(invalid.stack!.split('\n').length).toBeGreaterThan(1);
    expect(invalid.stack).toContain('nested');
  });

  it('a stack can still be written over', () => {
    const error = new RateLimitExceededError('login', decision);
    error.stack = 'written';
    expect(error.stack).toBe('written');
  });
});

describe('exceptions of the default mapping without stack frames', () => {
  it('a 429 is a TooManyRequestsException with its usual body, cause and Retry-After', () => {
    const refused = new RateLimitExceededError('login', decision);
    const headers: Record<string, string> = {};
    const limit = Error.stackTraceLimit;
    const mapped = nested(() => mapError(refused, httpContext(headers), {})) as TooManyRequestsException;
    expect(Error.stackTraceLimit).toBe(limit);
    expect(mapped).toBeInstanceOf(TooManyRequestsException);
    expect(mapped).toBeInstanceOf(HttpException);
    expect(mapped.name).toBe('TooManyRequestsException');
    expect(mapped.getStatus()).toBe(429);
    expect(mapped.getResponse()).toEqual({ message: refused.message, error: 'Too Many Requests', statusCode: 429 });
    expect(mapped.cause).toBe(refused);
    expect(mapped.stack).toBe(`TooManyRequestsException: ${refused.message}`);
    expect(headers['Retry-After']).toBe('2');
  });

  it('503 and 504 are Nest’s own exceptions, with a header-only stack', () => {
    const open = mapError(new CircuitOpenError('payments', 'OPEN', 2_500), httpContext(), {}) as ServiceUnavailableException;
    expect(open).toBeInstanceOf(ServiceUnavailableException);
    expect(open.stack).toBe(`ServiceUnavailableException: ${open.message}`);
    const late = mapError(new TimeoutExceededError(250), httpContext(), {}) as GatewayTimeoutException;
    expect(late).toBeInstanceOf(GatewayTimeoutException);
    expect(late.stack).toBe(`GatewayTimeoutException: ${late.message}`);
  });

  it('a transport’s exception gets a header-only stack too, and the limit is restored', () => {
    const limit = Error.stackTraceLimit;
    const context = new ExecutionContextHost([]);
    context.setType('rpc');
    const rpc = mapError(new CircuitOpenError('payments', 'OPEN', 2_500), context, { RpcException }) as RpcException;
    expect(rpc).toBeInstanceOf(RpcException);
    expect(rpc.stack).toBe(`${rpc.name}: ${rpc.message}`);
    expect(Error.stackTraceLimit).toBe(limit);
  });
});
