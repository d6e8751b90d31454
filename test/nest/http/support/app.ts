// The HTTP e2e harness: one way to build a real Nest application on Express or Fastify, so every
// case runs over both platforms (in the spirit of nestjs-pino's __tests__/utils/test-case.ts).
import type { INestApplication, ModuleMetadata } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Test, type TestingModule } from '@nestjs/testing';
import type { Server } from 'node:http';
import request from 'supertest';
import { MemoryStore, type ConsumeMode, type LimitSpec, type RateLimitDecision, type ResilienceStore } from 'nest-resilience';

/** The HTTP platforms every case runs on. */
export const PLATFORMS = ['express', 'fastify'] as const;
export type Platform = (typeof PLATFORMS)[number];

export interface AppOptions {
  /** Express `trust proxy` / Fastify `trustProxy`. @default off (the platforms' default) */
  trustProxy?: boolean | string;
  /** Fastify: route `/PATH/` like `/path` (Express does by default). */
  lenientRouting?: boolean;
  /** Silence Nest's logger (the default; errors thrown by handlers on purpose would be noise). */
  logger?: false;
}

export interface TestApp {
  readonly app: INestApplication;
  readonly server: Server;
  readonly moduleRef: TestingModule;
  readonly platform: Platform;
  /** Closes the application (idempotent). */
  close(): Promise<void>;
}

/**
 * Compiles `metadata` into a testing module and starts a real application on `platform`.
 * Rejects like `app.init()` does when bootstrap fails (bad decorator options).
 */
export async function createApp(platform: Platform, metadata: ModuleMetadata, options: AppOptions = {}): Promise<TestApp> {
  const moduleRef = await Test.createTestingModule(metadata).compile();
  let app: INestApplication;
  if (platform === 'fastify') {
    const adapter = new FastifyAdapter({
      ...(options.trustProxy !== undefined ? { trustProxy: options.trustProxy } : {}),
      ...(options.lenientRouting ? { routerOptions: { caseSensitive: false, ignoreTrailingSlash: true } } : {}),
    });
    app = moduleRef.createNestApplication(adapter, { logger: false });
  } else {
    app = moduleRef.createNestApplication<NestExpressApplication>({ logger: false });
    if (options.trustProxy !== undefined) (app as NestExpressApplication).set('trust proxy', options.trustProxy);
  }
  try {
    await app.init();
    if (platform === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
  let closed: Promise<void> | undefined;
  return {
    app,
    server: app.getHttpServer() as Server,
    moduleRef,
    platform,
    close: () => (closed ??= app.close()),
  };
}

/** Builds the app and expects bootstrap to fail; resolves with the error. */
export async function bootstrapError(platform: Platform, metadata: ModuleMetadata): Promise<Error> {
  try {
    const built = await createApp(platform, metadata);
    await built.close();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the application to fail at bootstrap');
}

/** A store that records every key and limit name it is asked about, in front of a MemoryStore. */
export class RecordingStore implements ResilienceStore {
  readonly kind = 'recording';
  readonly inner = new MemoryStore();
  readonly calls: Array<{ key: string; limits: string[]; cost: number; mode: ConsumeMode }> = [];

  consume(key: string, limits: readonly LimitSpec[], cost: number, mode: ConsumeMode, nowMs: number): RateLimitDecision {
    this.calls.push({ key, limits: limits.map((limit) => limit.name), cost, mode });
    return this.inner.consume(key, limits, cost, mode, nowMs);
  }

  reset(key: string, limits: readonly LimitSpec[]): void {
    this.inner.reset(key, limits);
  }

  /** Keys decided in `'consume'` mode, in order. */
  consumedKeys(): string[] {
    return this.calls.filter((call) => call.mode === 'consume').map((call) => call.key);
  }
}

/** Parses an IETF `RateLimit` header (`"name";r=1;t=2, ...`) into `{ name: { r, t } }`. */
export function parseRateLimit(header: string | undefined): Record<string, { r: number; t: number }> {
  const result: Record<string, { r: number; t: number }> = {};
  for (const item of (header ?? '').split(',').map((part) => part.trim()).filter(Boolean)) {
    const [name, ...params] = item.split(';');
    const values = Object.fromEntries(params.map((param) => param.split('=') as [string, string]));
    result[name!.replace(/"/g, '')] = { r: Number(values.r), t: Number(values.t) };
  }
  return result;
}

/** Parses an IETF `RateLimit-Policy` header (`"name";q=10;w=1, ...`) into `{ name: { q, w } }`. */
export function parseRateLimitPolicy(header: string | undefined): Record<string, { q: number; w: number }> {
  const result: Record<string, { q: number; w: number }> = {};
  for (const item of (header ?? '').split(',').map((part) => part.trim()).filter(Boolean)) {
    const [name, ...params] = item.split(';');
    const values = Object.fromEntries(params.map((param) => param.split('=') as [string, string]));
    result[name!.replace(/"/g, '')] = { q: Number(values.q), w: Number(values.w) };
  }
  return result;
}

/** Sends a GET and resolves with the status (for sequences of requests checked with one `expect`). */
export async function statuses(server: Server, requests: Array<string | [string, Record<string, string>]>): Promise<number[]> {
  const result: number[] = [];
  for (const entry of requests) {
    const [path, headers] = typeof entry === 'string' ? [entry, {}] : entry;
    result.push((await request(server).get(path).set(headers)).status);
  }
  return result;
}

/** Lets in-flight work progress a little: a few macrotask turns. */
export async function settle(turns = 3): Promise<void> {
  for (let index = 0; index < turns; index++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * Resolves `pending` (a supertest request, say) while moving `clock` forward in small steps, for
 * calls that wait on the policies' clock (retry backoff, timeouts, queue timeouts).
 */
export async function driveClock<T>(clock: { advanceAsync(ms: number): Promise<void> }, pending: PromiseLike<T>, stepMs = 50, maxSteps = 2_000): Promise<T> {
  const state = { done: false };
  const result = Promise.resolve(pending).finally(() => {
    state.done = true;
  });
  for (let step = 0; !state.done && step < maxSteps; step++) {
    await clock.advanceAsync(stepMs);
    await settle(1);
  }
  return result;
}

/** A promise with its resolve function, for handlers the test holds open. */
export function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Waits (on real time, briefly) until `condition` holds. */
export async function until(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}
