// The NestJS 11 packages the compatibility run resolves `@nestjs/*` from: installed once per
// version set into a folder of the system's temporary directory (outside the repository, so Node's
// resolution from those packages never walks up into the repository's NestJS 12), then reused.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * What the NestJS 11 folder holds. Every `@nestjs/*` package an e2e test or the library can load
 * is here, optional ones included (`@nestjs/core` requires `@nestjs/microservices` and
 * `@nestjs/websockets` when it finds them, the library imports them too): a NestJS 12 copy of any
 * of them would mix the two majors in one application. `rxjs` and `reflect-metadata` come from
 * here too, so the application has one copy of each, as an application on NestJS 11 would.
 */
export const NEST11_DEPENDENCIES: Readonly<Record<string, string>> = {
  '@nestjs/common': '^11.0.0',
  '@nestjs/core': '^11.0.0',
  '@nestjs/microservices': '^11.0.0',
  '@nestjs/platform-express': '^11.0.0',
  '@nestjs/platform-fastify': '^11.0.0',
  '@nestjs/platform-socket.io': '^11.0.0',
  '@nestjs/terminus': '^11.0.0',
  '@nestjs/testing': '^11.0.0',
  '@nestjs/websockets': '^11.0.0',
  'reflect-metadata': '^0.2.2',
  rxjs: '^7.8.1',
};

/**
 * The folder for this set of versions. Its name hashes the version ranges, so changing them
 * installs afresh; delete the folder to pick up newer 11.x releases.
 */
export function nest11Dir(): string {
  const key = createHash('sha256').update(JSON.stringify(NEST11_DEPENDENCIES)).digest('hex').slice(0, 12);
  return join(tmpdir(), 'nest-resilience-compat', `nest11-${key}`);
}

/**
 * Returns the NestJS 11 folder, installing it first when missing (from npm's cache when it can).
 * The install goes to a folder of its own that is renamed into place when complete, so an
 * interrupted install is never mistaken for a finished one and concurrent runs do not collide.
 */
export function ensureNest11(): { dir: string; installMs?: number } {
  const dir = nest11Dir();
  if (existsSync(join(dir, 'package.json'))) return { dir };
  const started = Date.now();
  const staging = `${dir}.${process.pid}.installing`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  writeFileSync(join(staging, 'package.json'), `${JSON.stringify({ name: 'nest11-compat', private: true, dependencies: NEST11_DEPENDENCIES }, null, 2)}\n`);
  try {
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: staging,
      stdio: ['ignore', 'pipe', 'pipe'],
      shell: process.platform === 'win32',
    });
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    const output = error as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`installing the NestJS 11 packages failed:\n${output.stdout?.toString() ?? ''}${output.stderr?.toString() ?? ''}`, { cause: error });
  }
  try {
    renameSync(staging, dir);
  } catch (error) {
    // Another run finished the same install first: use its folder.
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(join(dir, 'package.json'))) throw error;
  }
  return { dir, installMs: Date.now() - started };
}

/** The packages of the NestJS 11 folder that replace the repository's copies, with their versions. */
export function nest11Packages(dir: string): Array<{ name: string; path: string; version: string }> {
  const modules = join(dir, 'node_modules');
  const names = [...readdirSync(join(modules, '@nestjs')).map((name) => `@nestjs/${name}`), 'rxjs', 'reflect-metadata'];
  return names.map((name) => {
    const path = join(modules, name);
    const { version } = JSON.parse(readFileSync(join(path, 'package.json'), 'utf8')) as { version: string };
    return { name, path, version };
  });
}
