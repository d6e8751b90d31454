import type { ExecutionContext } from '@nestjs/common';
import { normalizeIp } from './client-ip.js';

/** The context kinds we adapt to; GraphQL is recognised without importing `@nestjs/graphql`. */
export type ContextKind = 'http' | 'rpc' | 'ws' | 'graphql';

/** Tells which kind of handler runs. */
export function contextKind(context: ExecutionContext): ContextKind {
  return context.getType<ContextKind>();
}

interface UserLike {
  id?: unknown;
  sub?: unknown;
  userId?: unknown;
}

interface HttpRequestLike {
  ip?: string;
  method?: string;
  user?: UserLike | null;
  socket?: { remoteAddress?: string };
  /** Fastify: the Node request, where Nest middleware (which receives it) may have put `user`. */
  raw?: { socket?: { remoteAddress?: string }; user?: UserLike | null };
}

/** The request object of an HTTP or GraphQL handler (GraphQL: from its context argument). */
export function requestOf(context: ExecutionContext): HttpRequestLike | undefined {
  const kind = contextKind(context);
  if (kind === 'http') return context.getArgByIndex<HttpRequestLike>(0);
  if (kind === 'graphql') {
    const graphqlContext = context.getArgByIndex<{ req?: HttpRequestLike; request?: HttpRequestLike } | undefined>(2);
    return graphqlContext?.req ?? graphqlContext?.request;
  }
  return undefined;
}

/** The response object of an HTTP handler (or a GraphQL one running over HTTP). */
export function responseOf(context: ExecutionContext): unknown {
  const kind = contextKind(context);
  if (kind === 'http') return context.getArgByIndex(1);
  if (kind === 'graphql') {
    const graphqlContext = context.getArgByIndex<{ res?: unknown; reply?: unknown } | undefined>(2);
    return graphqlContext?.res ?? graphqlContext?.reply;
  }
  return undefined;
}

/**
 * The client's address, normalised. HTTP: `request.ip`, which Express and Fastify compute
 * honouring their trust-proxy setting (so an untrusted peer's `X-Forwarded-For` is ignored),
 * else the socket's address. WebSocket: the socket's remote address. RPC: none.
 */
export function clientIpOf(context: ExecutionContext, ipv6Prefix: number, custom?: (request: unknown) => string | undefined): string | undefined {
  const kind = contextKind(context);
  if (kind === 'ws') {
    // socket.io: `handshake.address`; ws: the underlying socket (`_socket`); engine.io: `conn`.
    const client = context.switchToWs().getClient<{ handshake?: { address?: string }; conn?: { remoteAddress?: string }; request?: unknown } & Record<string, { remoteAddress?: string } | undefined>>();
    // A custom extractor sees the upgrade request (ws) or the handshake (socket.io), e.g. to read a proxy's header.
    if (custom !== undefined) {
      const customIp = normalizeIp(custom(client?.request ?? client?.handshake), ipv6Prefix);
      if (customIp !== undefined) return customIp;
    }
    return normalizeIp(client?.handshake?.address ?? client?.['_socket']?.remoteAddress ?? client?.conn?.remoteAddress, ipv6Prefix);
  }
  const request = requestOf(context);
  if (request === undefined) return undefined;
  if (custom !== undefined) return normalizeIp(custom(request), ipv6Prefix);
  return normalizeIp(request.ip, ipv6Prefix) ?? normalizeIp(request.socket?.remoteAddress ?? request.raw?.socket?.remoteAddress, ipv6Prefix);
}

/**
 * The authenticated user's identity (`id`, `sub` or `userId` of `request.user`), if any. On
 * Fastify, also `request.raw.user`: Nest middleware receives the raw request.
 */
export function userIdOf(context: ExecutionContext): string | undefined {
  const request = requestOf(context);
  const user = request?.user ?? request?.raw?.user;
  if (user === undefined || user === null) return undefined;
  const id = user.id ?? user.sub ?? user.userId;
  return id === undefined || id === null ? undefined : String(id);
}

/** Sets a response header on Express or Fastify; a no-op when there is no HTTP response. */
export function setHeader(response: unknown, name: string, value: string): void {
  const target = response as { header?: (name: string, value: string) => unknown; setHeader?: (name: string, value: string) => unknown; headersSent?: boolean; sent?: boolean };
  if (target === undefined || target === null || target.headersSent === true || target.sent === true) return;
  if (typeof target.header === 'function') target.header(name, value);
  else if (typeof target.setHeader === 'function') target.setHeader(name, value);
}
