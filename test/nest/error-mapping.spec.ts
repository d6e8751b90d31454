import { HttpException } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { RpcException } from '@nestjs/microservices';
import { WsException } from '@nestjs/websockets';
import { describe, expect, it } from 'vitest';
import { CircuitOpenError, RateLimitExceededError, StoreUnavailableError, TimeoutExceededError } from 'nest-resilience';
import { mapError } from '../../lib/nest/errors/error-mapping.js';

function contextOf(type: string, args: unknown[] = []): ExecutionContextHost {
  const context = new ExecutionContextHost(args);
  context.setType(type);
  return context;
}

const refused = new RateLimitExceededError('login', { allowed: false, retryAfterMs: 1_200, limits: [] });

describe('default error mapping outside HTTP', () => {
  it('GraphQL: an error whose extensions graphql-js copies into the response', () => {
    const mapped = mapError(refused, contextOf('graphql', [{}, {}, {}, {}]), {}) as Error & { extensions: Record<string, unknown> };
    expect(mapped).toBeInstanceOf(Error);
    expect(mapped.cause).toBe(refused);
    expect(mapped.extensions).toEqual({ code: 'TOO_MANY_REQUESTS', http: { status: 429 }, retryAfter: 2 });
    const timeout = mapError(new TimeoutExceededError(50), contextOf('graphql', [{}, {}, {}, {}]), {}) as Error & { extensions: Record<string, unknown> };
    expect(timeout.extensions).toEqual({ code: 'GATEWAY_TIMEOUT', http: { status: 504 } });
  });

  it('RPC and WebSocket: the transport’s own exception with { status, error, message, retryAfter }', () => {
    const rpc = mapError(new CircuitOpenError('payments', 'OPEN', 2_500), contextOf('rpc'), { RpcException }) as RpcException;
    expect(rpc).toBeInstanceOf(RpcException);
    expect(rpc.getError()).toMatchObject({ status: 503, error: 'Service Unavailable', retryAfter: 3 });
    const ws = mapError(refused, contextOf('ws'), { WsException }) as WsException;
    expect(ws).toBeInstanceOf(WsException);
    expect(ws.getError()).toMatchObject({ status: 429, error: 'Too Many Requests', retryAfter: 2 });
  });

  it('HTTP: a fail-closed store is a 503 with Retry-After, never a 429', () => {
    const headers: Record<string, string> = {};
    const response = { header: (name: string, value: string) => (headers[name] = value) };
    const mapped = mapError(new StoreUnavailableError('redis', 1_000), contextOf('http', [{}, response]), {}) as HttpException;
    expect(mapped.getStatus()).toBe(503);
    expect(headers['Retry-After']).toBe('1');
  });

  it('leaves errors that are not ours unchanged', () => {
    const error = new Error('boom');
    expect(mapError(error, contextOf('graphql', [{}, {}, {}, {}]), {})).toBe(error);
  });
});
