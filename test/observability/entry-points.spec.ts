// The optional integrations stay optional: prom-client, @nestjs/terminus and @opentelemetry/api are
// imported only by their own entry point's folder, and neither the root entry point's modules nor
// its type declarations ever mention them (in the spirit of nestjs/terminus's tools/import-check.ts).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const lib = join(root, 'lib');

/** Optional peer dependencies, with the only folder allowed to import each. */
const OPTIONAL = [
  { name: 'prom-client', folder: 'observability/prometheus/', entry: 'prometheus' },
  { name: '@nestjs/terminus', folder: 'observability/health/', entry: 'terminus' },
  { name: '@opentelemetry/api', folder: 'observability/opentelemetry/', entry: 'opentelemetry' },
] as const;
const OPTIONAL_PATTERN = /prom-client|@nestjs\/terminus|@opentelemetry\//;

/**
 * The modules of the root entry point: lib/index.ts and what it reaches, plus the observability
 * folders meant for it (logging, introspection), whether or not index.ts exports them yet.
 */
const ROOT_ENTRIES = ['index', 'observability/logging/index', 'observability/introspection/index'];

function sources(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const IMPORT = /^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;

function importsOf(text: string, file: string, base: string): { local: string[]; packages: string[] } {
  const local: string[] = [];
  const packages: string[] = [];
  for (const match of text.matchAll(IMPORT)) {
    const target = match[1] ?? match[2] ?? match[3]!;
    if (target.startsWith('.')) local.push(relative(base, resolve(dirname(file), target)).split('\\').join('/').replace(/\.(d\.ts|js|ts)$/, ''));
    else packages.push(target);
  }
  return { local, packages };
}

const files = sources(lib).map((path) => ({ name: relative(lib, path).split('\\').join('/').replace(/\.ts$/, ''), ...importsOf(readFileSync(path, 'utf8'), path, lib) }));
const byName = new Map(files.map((file) => [file.name, file]));

/** Every module `entries` reach through relative imports. */
function reach(entries: readonly string[], graph: Map<string, { local: string[] }>): Set<string> {
  const reached = new Set<string>();
  const visit = (name: string): void => {
    const resolved = graph.has(name) ? name : `${name}/index`;
    if (reached.has(resolved) || !graph.has(resolved)) return;
    reached.add(resolved);
    for (const target of graph.get(resolved)!.local) visit(target);
  };
  for (const entry of entries) visit(entry);
  return reached;
}

describe('optional integrations', () => {
  it('import each optional package only from its own folder', () => {
    const offenders = files.flatMap((file) =>
      OPTIONAL.filter(({ name, folder }) => file.packages.some((target) => target === name || target.startsWith(`${name}/`)) && !file.name.startsWith(folder)).map(({ name }) => `${file.name} → ${name}`),
    );
    expect(offenders).toEqual([]);
    // Each integration does use its package (so the check above has something to find).
    for (const { name, folder } of OPTIONAL) expect(files.some((file) => file.name.startsWith(folder) && file.packages.includes(name))).toBe(true);
  });

  it('are never reached from the root entry point', () => {
    const reached = reach(ROOT_ENTRIES, byName);
    expect(reached.has('observability/logging/resilience-logging')).toBe(true);
    expect(reached.has('observability/introspection/resilience-introspection')).toBe(true);
    const offenders = [...reached].filter((name) => byName.get(name)!.packages.some((target) => OPTIONAL_PATTERN.test(target)) || OPTIONAL.some(({ entry }) => name === entry));
    expect(offenders).toEqual([]);
    // Control: each optional entry point does reach its package.
    for (const { name, entry } of OPTIONAL) expect([...reach([entry], byName)].some((module) => byName.get(module)!.packages.includes(name))).toBe(true);
  });

  it('sit above the Nest layer: nothing in core/, policies/, stores/ or nest/ imports observability/', () => {
    const offenders = files
      .filter((file) => /^(core|policies|stores|nest)\//.test(file.name))
      .flatMap((file) => file.local.filter((target) => target.startsWith('observability/')).map((target) => `${file.name} → ${target}`));
    expect(offenders).toEqual([]);
  });

  it('have package.json entry points with types, and optional peer dependencies', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      exports: Record<string, unknown>;
      peerDependencies: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional?: boolean }>;
    };
    for (const { name, entry } of OPTIONAL) {
      expect(pkg.exports[`./${entry}`]).toEqual({ types: `./dist/${entry}.d.ts`, default: `./dist/${entry}.js` });
      expect(pkg.peerDependencies[name]).toBeDefined();
      expect(pkg.peerDependenciesMeta[name]).toEqual({ optional: true });
    }
  });

  it('never appear in the root type declarations', { timeout: 120_000 }, () => {
    const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.build.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
    if (config === undefined) throw new Error('cannot read tsconfig.build.json');
    const outDir = join(root, '.declarations-check');
    const declarations = new Map<string, string>();
    const entries = [...ROOT_ENTRIES, ...OPTIONAL.map(({ entry }) => entry)].map((name) => join(lib, `${name}.ts`));
    const program = ts.createProgram(entries, { ...config.options, outDir, rootDir: lib, noEmit: false, declaration: true, emitDeclarationOnly: true, sourceMap: false, declarationMap: false });
    program.emit(undefined, (fileName, text) => {
      if (fileName.endsWith('.d.ts')) declarations.set(posix.normalize(relative(outDir, fileName).split('\\').join('/')).replace(/\.d\.ts$/, ''), text);
    });
    const graph = new Map([...declarations].map(([name, text]) => [name, { ...importsOf(text, join(outDir, `${name}.d.ts`), outDir), text }]));

    const reached = reach(ROOT_ENTRIES, graph);
    expect(reached.has('index')).toBe(true);
    expect(reached.has('observability/logging/resilience-logging')).toBe(true);
    const mentions = [...reached].filter((name) => OPTIONAL_PATTERN.test(graph.get(name)!.text));
    expect(mentions).toEqual([]);
    // Control: each optional entry point's declarations do mention its package.
    for (const { name, entry } of OPTIONAL) expect([...reach([entry], graph)].some((module) => graph.get(module)!.text.includes(name))).toBe(true);
  });
});
