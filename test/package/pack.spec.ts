// The package as npm publishes it: the tarball holds the build and nothing else, its exports and
// type declarations resolve for an application made by the NestJS 12 CLI (nodenext, CommonJS
// output) and for one built by a bundler, and that application starts and answers through a
// decorated route. Installs come from npm's cache when it has them (`--prefer-offline`).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeNestApp } from './support/nest-app.js';
import { npmEnv, root, run, stagePackage, tsc } from './support/package-build.js';

/** The optional peer dependencies, one per subpath entry point. */
const OPTIONAL_PEERS = ['ioredis', 'prom-client', '@nestjs/terminus', '@opentelemetry/api'];
/** What may sit beside `dist/` in the tarball. */
const PACKAGE_FILES = ['LICENSE', 'README.md', 'package.json'];

interface PackReport {
  filename: string;
  files: Array<{ path: string }>;
}

/** lib/'s source files, as paths relative to lib/ without the extension. */
function libModules(folder = join(root, 'lib')): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return libModules(path);
    return entry.name.endsWith('.ts') ? [relative(join(root, 'lib'), path).split('\\').join('/').replace(/\.ts$/, '')] : [];
  });
}

/** Every reference of a source map or a `sourceMappingURL` comment to a file the package lacks. */
function danglingSourceMaps(dir: string, files: readonly string[]): string[] {
  const shipped = new Set(files);
  const dangling: string[] = [];
  for (const file of files) {
    if (file.endsWith('.js')) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(dir, file), 'utf8'))?.[1];
      if (url !== undefined && !url.startsWith('data:') && !shipped.has(posix.join(posix.dirname(file), url))) dangling.push(`${file} → ${url}`);
    }
    if (file.endsWith('.map')) {
      const map = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { sources: string[]; sourceRoot?: string; sourcesContent?: Array<string | null> };
      map.sources.forEach((source, index) => {
        const target = posix.join(posix.dirname(file), map.sourceRoot ?? '', source);
        if (typeof map.sourcesContent?.[index] !== 'string' && !shipped.has(target)) dangling.push(`${file} → ${source}`);
      });
    }
  }
  return dangling;
}

/** Resolves with the URL the application prints once it listens; rejects if it exits first. */
function listeningUrl(child: ChildProcess, timeoutMs = 45_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`the application did not start in ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const url = /listening on (\S+)/.exec(output)?.[1];
      if (url !== undefined) {
        clearTimeout(timer);
        resolve(url);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the application exited (${code}) before listening:\n${output}`));
    });
  });
}

/** Stops the application this test started, by its own handle, and waits for it to exit. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

describe('the packed package', () => {
  let work: string;
  let stage: string;
  let tarball: string;
  let files: string[];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'nest-resilience-pack-'));
    stage = join(work, 'package');
    await stagePackage(stage);
    const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: stage, env: npmEnv() });
    const [report] = JSON.parse(stdout) as PackReport[];
    tarball = join(work, report!.filename);
    files = report!.files.map((file) => file.path).toSorted();
  }, 300_000);

  afterAll(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it('holds dist/, package.json, README.md and LICENSE, and nothing else', () => {
    expect(files.filter((path) => !path.startsWith('dist/'))).toEqual(PACKAGE_FILES);
    expect(files).toContain('dist/index.js');
  });

  it('ships, for each source file of lib/, its module and its declarations, and nothing more', () => {
    const expected = libModules().flatMap((name) => [`dist/${name}.d.ts`, `dist/${name}.js`]);
    expect(files.filter((path) => path.startsWith('dist/') && !path.endsWith('.map'))).toEqual(expected.toSorted());
  });

  it('has no source map that points at a file it does not ship', () => {
    expect(danglingSourceMaps(stage, files)).toEqual([]);
  });

  it('ships the file of every export condition in package.json', () => {
    const { exports } = JSON.parse(readFileSync(join(stage, 'package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>> };
    const targets = Object.values(exports).flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target)));
    expect(targets.map((target) => posix.normalize(target)).filter((target) => !files.includes(target))).toEqual([]);
  });

  it('keeps the rest of the repository out: the files field, applied to the repository itself', { timeout: 60_000 }, async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, env: npmEnv() });
    const [report] = JSON.parse(stdout) as PackReport[];
    const outside = report!.files.map((file) => file.path).filter((path) => !path.startsWith('dist/') && !PACKAGE_FILES.includes(path));
    expect(outside).toEqual([]);
  });

  describe('installed into a fresh NestJS 12 application', () => {
    let app: string;

    beforeAll(async () => {
      app = join(work, 'app');
      const { devDependencies } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
      writeNestApp(app, tarball, Object.fromEntries(OPTIONAL_PEERS.map((name) => [name, devDependencies[name]!])));
      await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app, env: npmEnv() });
      // `nest build` without the CLI: the template's tsconfig.build.json (nodenext, CommonJS output).
      await run(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: app });
    }, 300_000);

    it('type-checks under moduleResolution bundler, declarations included', { timeout: 120_000 }, async () => {
      const { stdout } = await run(process.execPath, [tsc, '-p', 'tsconfig.bundler.json'], { cwd: app });
      expect(stdout).toBe('');
    });

    it('starts, and its @RateLimit route answers 200 then 429; every entry point loads through require', { timeout: 60_000 }, async () => {
      const child = spawn(process.execPath, ['dist/main.js'], { cwd: app, env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        const url = await listeningUrl(child);
        const first = await fetch(`${url}/`);
        const second = await fetch(`${url}/`);
        expect([first.status, await first.text()]).toEqual([200, 'Hello World!']);
        expect(second.status).toBe(429);
        expect(Number(second.headers.get('retry-after'))).toBeGreaterThan(0);

        const loaded = (await (await fetch(`${url}/entry-points`)).json()) as Record<string, string>;
        expect(loaded).toEqual({
          'nest-resilience': 'function',
          'nest-resilience (a function)': 'function',
          'nest-resilience/opentelemetry': 'function',
          'nest-resilience/prometheus': 'function',
          'nest-resilience/redis': 'function',
          'nest-resilience/terminus': 'function',
        });
        const metrics = await fetch(`${url}/metrics`);
        expect(metrics.status).toBe(200);
        expect(await metrics.text()).toMatch(/^resilience_/m);
      } finally {
        await stop(child);
      }
    });

    it('loads every entry point from an ES module of the application', { timeout: 60_000 }, async () => {
      const { stdout } = await run(process.execPath, ['dist/esm-check.mjs'], { cwd: app });
      expect(JSON.parse(stdout)).toEqual({
        'nest-resilience': 'function',
        'nest-resilience/opentelemetry': 'function',
        'nest-resilience/prometheus': 'function',
        'nest-resilience/redis': 'function',
        'nest-resilience/terminus': 'function',
      });
    });
  });
});
