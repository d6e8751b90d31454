import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Transpiles `lib/` to plain ESM JavaScript in a temporary folder, so a test can run the engines
 * in a child process of its own (under `--unhandled-rejections=strict`, or as one of several
 * processes of a fleet) without a build step. Returns the folder and a disposer.
 */
export function compileLib(): { dir: string; dispose: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'nest-resilience-lib-'));
  const libRoot = join(root, 'lib');
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        const output = ts.transpileModule(readFileSync(path, 'utf8'), {
          compilerOptions: {
            module: ts.ModuleKind.ESNext,
            target: ts.ScriptTarget.ES2022,
            experimentalDecorators: true,
            emitDecoratorMetadata: true,
            useDefineForClassFields: false,
          },
          fileName: path,
        }).outputText;
        const target = join(dir, 'lib', relative(libRoot, path)).replace(/\.ts$/, '.js');
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(target, output);
      }
    }
  };
  walk(libRoot);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  return { dir, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
