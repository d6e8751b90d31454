import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const lib = fileURLToPath(new URL('../lib', import.meta.url));

function sources(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const IMPORT = /^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;

/** Every module a file imports, relative ones resolved to paths under lib/ (without extension). */
function importsOf(file: string): { local: string[]; packages: string[] } {
  const text = readFileSync(file, 'utf8');
  const local: string[] = [];
  const packages: string[] = [];
  for (const match of text.matchAll(IMPORT)) {
    const target = match[1] ?? match[2] ?? match[3]!;
    if (target.startsWith('.')) local.push(relative(lib, resolve(dirname(file), target)).replace(/\.js$/, ''));
    else packages.push(target);
  }
  return { local, packages };
}

const files = sources(lib).map((path) => ({ path, name: relative(lib, path).replace(/\.ts$/, ''), ...importsOf(path) }));

describe('layer rules of lib/', () => {
  it('core/ imports nothing of ours outside core/', () => {
    const offenders = files.filter((file) => file.name.startsWith('core/')).flatMap((file) => file.local.filter((target) => !target.startsWith('core/')).map((target) => `${file.name} → ${target}`));
    expect(offenders).toEqual([]);
  });

  it('the engines and stores import no Nest package and nothing of nest/', () => {
    const offenders = files
      .filter((file) => file.name.startsWith('core/') || file.name.startsWith('policies/') || file.name.startsWith('stores/'))
      .flatMap((file) => [
        ...file.packages.filter((target) => target.startsWith('@nestjs/')).map((target) => `${file.name} → ${target}`),
        ...file.local.filter((target) => target.startsWith('nest/')).map((target) => `${file.name} → ${target}`),
      ]);
    expect(offenders).toEqual([]);
  });

  it('nothing outside nest/ imports nest/, except the root and redis entry points and the observability bridge', () => {
    const offenders = files
      .filter((file) => !file.name.startsWith('nest/') && file.name !== 'index' && file.name !== 'redis' && file.name !== 'observability/shared/resilience-refs')
      .flatMap((file) => file.local.filter((target) => target.startsWith('nest/')).map((target) => `${file.name} → ${target}`));
    expect(offenders).toEqual([]);
  });

  it('only stores/redis/ imports ioredis, and the root entry point never reaches it', () => {
    const offenders = files.filter((file) => !file.name.startsWith('stores/redis/') && file.packages.includes('ioredis')).map((file) => file.name);
    expect(offenders).toEqual([]);
    const byName = new Map(files.map((file) => [file.name, file]));
    const reached = new Set<string>();
    const visit = (name: string): void => {
      const resolved = byName.has(name) ? name : `${name}/index`;
      if (reached.has(resolved) || !byName.has(resolved)) return;
      reached.add(resolved);
      for (const target of byName.get(resolved)!.local) visit(target);
    };
    visit('index');
    expect(reached.size).toBeGreaterThan(20);
    expect([...reached].filter((name) => name.startsWith('stores/redis/') || byName.get(name)!.packages.includes('ioredis'))).toEqual([]);
  });
});
