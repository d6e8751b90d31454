import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { compileForFleet, type CompiledLib } from './support/fleet.js';

// Two (then three) app PROCESSES, each a small compiled Nest app with ResilienceModule and
// ResilienceLiveConfigModule on the run's redis-server. The app's `GET /flaky` always fails under
// the named policy `payments` (retry only); `GET /calls` answers how many times the handler ran
// for the last request, i.e. the `retry.maxAttempts` in force in that process. A generous
// `commandTimeout`: startup waits up to it for the hash, and the machine running the tests may be busy.

const APP = String.raw`
import 'reflect-metadata';
import { Body, Controller, Get, Module, Param, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
const lib = new URL('./lib/', import.meta.url).href;
const { ResilienceModule, ResilienceRegistry, UseResilience } = await import(lib + 'index.js');
const { ResilienceLiveConfig, ResilienceLiveConfigModule } = await import(lib + 'redis.js');
const input = JSON.parse(process.env.APP_INPUT);

const decorate = (target, method, ...decorators) => {
  const descriptor = Object.getOwnPropertyDescriptor(target.prototype, method);
  for (const decorator of decorators.toReversed()) decorator(target.prototype, method, descriptor);
};

class FlakyController {
  calls = 0;
  last = 0;
  flaky() {
    this.calls++;
    throw new Error('downstream down');
  }
  count() {
    const count = this.calls;
    this.calls = 0;
    return { calls: count };
  }
}
Controller()(FlakyController);
decorate(FlakyController, 'flaky', Get('flaky'), UseResilience('payments'));
decorate(FlakyController, 'count', Get('calls'));

class AdminController {
  constructor(live, registry) {
    this.live = live;
    this.registry = registry;
    this.applied = [];
    this.refused = [];
    live.onApplied((event) => this.applied.push(event));
    live.onRefused((event) => this.refused.push({ name: event.name, version: event.version, origin: event.origin, message: String(event.error?.message ?? event.error) }));
  }
  async update(name, changes) {
    try {
      return { version: (await this.live.update(name, changes)).version };
    } catch (error) {
      return { error: error.message };
    }
  }
  policy(name) {
    return this.registry.get(name);
  }
  events() {
    return { instanceId: this.live.instanceId, applied: this.applied, refused: this.refused };
  }
}
Reflect.defineMetadata('design:paramtypes', [ResilienceLiveConfig, ResilienceRegistry], AdminController);
Controller('admin')(AdminController);
Param('name')(AdminController.prototype, 'update', 0);
Body()(AdminController.prototype, 'update', 1);
decorate(AdminController, 'update', Post('update/:name'));
Param('name')(AdminController.prototype, 'policy', 0);
decorate(AdminController, 'policy', Get('policy/:name'));
decorate(AdminController, 'events', Get('events'));

class AppModule {}
Module({
  imports: [
    ResilienceModule.forRoot({ isGlobal: true, policies: { payments: { retry: { maxAttempts: 2, delay: 1, jitter: 'none' } } } }),
    ResilienceLiveConfigModule.forRootAsync({ useFactory: () => ({ redis: input.redisUrl, channel: input.channel, key: input.key, instanceId: input.instanceId, commandTimeout: '10s' }) }),
  ],
  controllers: [FlakyController, AdminController],
})(AppModule);

const app = await NestFactory.create(AppModule, { logger: ['error', 'warn', 'log'] });
app.enableShutdownHooks();
await app.listen(0, '127.0.0.1');
console.log(JSON.stringify({ port: app.getHttpServer().address().port }));
`;

interface AppProcess {
  readonly child: ChildProcess;
  readonly base: string;
  output: string;
}

let lib: CompiledLib;
let script: string;
const children = new Set<ChildProcess>();
const id = randomUUID();
const names = { channel: `lc-fleet-${id}`, key: `lc-fleet-${id}` };

async function startApp(instanceId: string): Promise<AppProcess> {
  const child = spawn(process.execPath, ['--unhandled-rejections=strict', script], {
    env: { ...process.env, APP_INPUT: JSON.stringify({ redisUrl: inject('redisUrl'), instanceId, ...names }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const app = { child, base: '', output: '' };
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app ${instanceId} did not start:\n${app.output}`)), 15_000);
    const onData = (chunk: Buffer): void => {
      app.output += chunk.toString();
      const match = /^\{"port":(\d+)\}$/m.exec(app.output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`app ${instanceId} exited with ${code}:\n${app.output}`));
    });
  });
  return Object.assign(app, { base: `http://127.0.0.1:${port}` });
}

/** Stops an app as an orchestrator would; Nest closes it (hooks, connections) and re-raises the signal. */
async function stopApp(app: AppProcess): Promise<number | string | null> {
  if (app.child.exitCode !== null || app.child.signalCode !== null) return app.child.exitCode ?? app.child.signalCode;
  const exited = new Promise<number | string | null>((resolve) => app.child.once('exit', (code, signal) => resolve(code ?? signal)));
  process.kill(app.child.pid!, 'SIGTERM');
  return exited;
}

/** How many times `payments` lets the handler run for one request in this process. */
async function attempts(app: AppProcess): Promise<number> {
  const failed = await fetch(`${app.base}/flaky`);
  expect(failed.status).toBe(500);
  return ((await (await fetch(`${app.base}/calls`)).json()) as { calls: number }).calls;
}

async function update(app: AppProcess, changes: object): Promise<{ version?: number; error?: string }> {
  const response = await fetch(`${app.base}/admin/update/payments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(changes) });
  return (await response.json()) as { version?: number; error?: string };
}

interface Events {
  instanceId: string;
  applied: Array<{ name: string; version: number; origin: string; changed: boolean }>;
  refused: Array<{ name: string; version: number; origin: string; message: string }>;
}

async function events(app: AppProcess): Promise<Events> {
  return (await (await fetch(`${app.base}/admin/events`)).json()) as Events;
}

/** What an operator's script does (docs/live-config.md): INCR, HSET, PUBLISH. */
async function operatorPublish(definition: object): Promise<number> {
  const redis = new Redis(inject('redisUrl'));
  try {
    const version = await redis.incr(`{${names.key}}:version`);
    const entry = JSON.stringify({ version, name: 'payments', origin: 'ops-script', definition });
    await redis.hset(`{${names.key}}`, 'payments', entry);
    await redis.publish(names.channel, entry);
    return version;
  } finally {
    redis.disconnect();
  }
}

describe('live configuration across two app processes (real Redis)', () => {
  let first: AppProcess;
  let second: AppProcess;

  beforeAll(async () => {
    lib = compileForFleet();
    // Next to the compiled lib/, whose node_modules link resolves @nestjs/* and ioredis.
    script = join(fileURLToPath(new URL(lib.libUrl)), '..', 'app.mjs');
    writeFileSync(script, APP);
    [first, second] = await Promise.all([startApp('app-1'), startApp('app-2')]);
  }, 30_000);

  afterAll(async () => {
    for (const child of children) process.kill(child.pid!, 'SIGKILL');
    lib?.dispose();
  });

  it('an update through the registry in process 1 is used by the next call of process 2', async () => {
    expect([await attempts(first), await attempts(second)]).toEqual([2, 2]);
    const published = await update(first, { retry: { maxAttempts: 4 } });
    expect(published.version).toBeGreaterThan(0);
    await expect.poll(async () => (await events(second)).applied.map((event) => event.version)).toContain(published.version);
    expect([await attempts(first), await attempts(second)]).toEqual([4, 4]);
    const [one, two] = [await events(first), await events(second)];
    // The origin already ran the change: its own echo rebuilt nothing.
    expect(one.applied.find((event) => event.version === published.version)).toMatchObject({ origin: 'app-1', changed: false });
    expect(two.applied.find((event) => event.version === published.version)).toMatchObject({ origin: 'app-1', changed: true });
    expect(await (await fetch(`${second.base}/admin/policy/payments`)).json()).toEqual({ retry: { maxAttempts: 4, delay: 1, jitter: 'none' } });
  });

  it('an invalid update is refused at the origin and never published', async () => {
    const invalid = await update(first, { retry: { maxAttempts: 0 } });
    expect(invalid.error).toMatch(/ResilienceRegistry\.update\("payments"\): invalid option "retry\.maxAttempts": got 0/);
    expect([await attempts(first), await attempts(second)]).toEqual([4, 4]);
  });

  it('an operator publish reaches both; an invalid one is refused by both, logged, and the old settings stay', async () => {
    const version = await operatorPublish({ retry: { maxAttempts: 3, delay: 1, jitter: 'none' } });
    for (const app of [first, second]) await expect.poll(async () => (await events(app)).applied.map((event) => event.version)).toContain(version);
    expect([await attempts(first), await attempts(second)]).toEqual([3, 3]);

    const bad = await operatorPublish({ retry: { maxAttempts: 0 } });
    for (const app of [first, second]) {
      await expect.poll(async () => (await events(app)).refused.map((event) => event.version)).toContain(bad);
      const refusal = (await events(app)).refused.find((event) => event.version === bad)!;
      expect(refusal).toMatchObject({ name: 'payments', origin: 'ops-script' });
      expect(refusal.message).toContain('invalid option "retry.maxAttempts": got 0');
      await expect.poll(() => app.output).toMatch(new RegExp(`Refused version ${bad} of policy "payments" from ops-script.*invalid option "retry\\.maxAttempts": got 0`));
    }
    expect([await attempts(first), await attempts(second)]).toEqual([3, 3]);

    const unknown = await (async () => {
      const redis = new Redis(inject('redisUrl'));
      const v = await redis.incr(`{${names.key}}:version`);
      await redis.publish(names.channel, JSON.stringify({ version: v, name: 'nope', origin: 'ops-script', definition: { retry: { maxAttempts: 2 } } }));
      redis.disconnect();
      return v;
    })();
    for (const app of [first, second]) {
      await expect.poll(async () => (await events(app)).refused.find((event) => event.version === unknown)?.message).toMatch(/invalid option "policy": got "nope"; expected one of the named policies: payments/);
    }
  });

  it('an instance restarted after changes it missed starts with the current version', async () => {
    expect(await stopApp(second)).toBe('SIGTERM');
    const published = await update(first, { retry: { maxAttempts: 5 } });
    expect(published.version).toBeGreaterThan(0);
    const third = await startApp('app-3');
    // No waiting: the hash is loaded before the app serves its first request.
    expect(await attempts(third)).toBe(5);
    expect((await events(third)).applied).toEqual([expect.objectContaining({ version: published.version, origin: 'app-1', changed: true })]);
    expect(await stopApp(third)).toBe('SIGTERM');
    expect(await stopApp(first)).toBe('SIGTERM');
    expect(`${first.output}${third.output}`).not.toMatch(/Unhandled|Redis \w+ failed/);
  });
});
