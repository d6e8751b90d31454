// A CommonJS application on NestJS 11 loads the built package with `require` (Node ≥ 20.19 loads
// an ES module that way) and serves a rate-limited route on Express and on Fastify. The package is
// built into the application's own node_modules, next to the NestJS 11 install, so every import
// of the package resolves to the 11.x packages, as in a real application.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, stagePackage } from '../package/support/package-build.js';
import { ensureNest11 } from './nest11.js';

const CONSUMER = fileURLToPath(new URL('./fixtures/cjs-consumer.cjs', import.meta.url));

describe('a CommonJS application on NestJS 11', () => {
  let app: string;

  beforeAll(async () => {
    const consumers = join(ensureNest11().dir, 'consumers');
    mkdirSync(consumers, { recursive: true });
    app = mkdtempSync(join(consumers, 'cjs-'));
    await stagePackage(join(app, 'node_modules', 'nest-resilience'));
    copyFileSync(CONSUMER, join(app, 'main.cjs'));
  }, 300_000);

  afterAll(() => {
    if (app !== undefined) rmSync(app, { recursive: true, force: true });
  });

  it('requires the package and answers 200 then 429 (with Retry-After) on Express and Fastify', { timeout: 60_000 }, async () => {
    const { stdout } = await run(process.execPath, ['main.cjs'], { cwd: app, timeoutMs: 45_000 });
    const result = JSON.parse(stdout) as {
      resilience: string;
      versions: Record<string, string>;
      express: { statuses: number[]; retryAfter: Array<string | null> };
      fastify: { statuses: number[]; retryAfter: Array<string | null> };
    };
    console.log(`CommonJS consumer on ${JSON.stringify(result.versions)}`);
    expect(result.resilience).toBe(join(app, 'node_modules', 'nest-resilience', 'dist', 'index.js'));
    expect(Object.values(result.versions).map((version) => version.split('.')[0])).toEqual(['11', '11', '11', '11']);
    for (const platform of ['express', 'fastify'] as const) {
      expect(result[platform].statuses).toEqual([200, 429]);
      expect(result[platform].retryAfter[0]).toBeNull();
      expect(Number(result[platform].retryAfter[1])).toBeGreaterThan(0);
    }
  });
});
