// A real Nest application on Express or Fastify for the observability tests.
import type { INestApplication, LoggerService, ModuleMetadata } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Test, type TestingModule } from '@nestjs/testing';
import type { Server } from 'node:http';

export const PLATFORMS = ['express', 'fastify'] as const;
export type Platform = (typeof PLATFORMS)[number];

export interface TestApp {
  readonly app: INestApplication;
  readonly server: Server;
  readonly moduleRef: TestingModule;
  close(): Promise<void>;
}

/** Compiles `metadata` and starts it on `platform`; Nest's own logging off unless a logger is given. */
export async function createApp(
  platform: Platform,
  metadata: ModuleMetadata,
  options: { logger?: LoggerService; configure?: (app: INestApplication) => void } = {},
): Promise<TestApp> {
  const moduleRef = await Test.createTestingModule(metadata).compile();
  const logger = options.logger ?? false;
  const app =
    platform === 'fastify'
      ? moduleRef.createNestApplication(new FastifyAdapter(), { logger })
      : moduleRef.createNestApplication<NestExpressApplication>({ logger });
  options.configure?.(app);
  try {
    await app.init();
    if (platform === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
  let closed: Promise<void> | undefined;
  return { app, server: app.getHttpServer() as Server, moduleRef, close: () => (closed ??= app.close()) };
}

/** A promise with its resolve function, for handlers a test holds open. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Waits (briefly, on real time) until `condition` holds. */
export async function until(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Parses Prometheus text into samples: `name{a="x",b="y"}` → value. */
export function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$/.exec(line);
    if (match === null) continue;
    const labels = [...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
      .map(([, key, value]) => [key!, value!] as const)
      .toSorted(([a], [b]) => a.localeCompare(b));
    samples.set(`${match[1]}{${labels.map(([key, value]) => `${key}="${value}"`).join(',')}}`, Number(match[3]));
  }
  return samples;
}

/** The sample of `name` with exactly these labels (undefined when absent). */
export function sample(samples: Map<string, number>, name: string, labels: Record<string, string> = {}): number | undefined {
  const key = Object.entries(labels)
    .toSorted(([a], [b]) => a.localeCompare(b))
    .map(([label, value]) => `${label}="${value}"`)
    .join(',');
  return samples.get(`${name}{${key}}`);
}

/** Names of every sample of `name`, with their labels, for readable failures. */
export function series(samples: Map<string, number>, name: string): Record<string, number> {
  return Object.fromEntries([...samples].filter(([key]) => key.startsWith(`${name}{`)));
}
