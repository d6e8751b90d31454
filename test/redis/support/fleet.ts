import { spawn } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { compileLib } from '../../support/compile-lib.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));

/** The compiled library a fleet's processes import, and its disposer. */
export interface CompiledLib {
  /** `file:` URL of the compiled `lib/` folder, ending in `/`. */
  readonly libUrl: string;
  /** `file:` URL of the repository's ioredis entry, for scripts that talk to Redis directly. */
  readonly ioredisUrl: string;
  dispose(): void;
}

/**
 * Transpiles `lib/` for child processes (see `test/support/compile-lib.ts`) and links the
 * repository's `node_modules` next to it, so the compiled Redis store resolves `ioredis`.
 */
export function compileForFleet(): CompiledLib {
  const { dir, dispose } = compileLib();
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return {
    libUrl: pathToFileURL(join(dir, 'lib')).href + '/',
    ioredisUrl: pathToFileURL(join(root, 'node_modules', 'ioredis', 'built', 'index.js')).href,
    dispose,
  };
}

/**
 * Runs `script` (a `.mjs` file under `test/redis/support/`) in one child process per input, all
 * at once, each under `--unhandled-rejections=strict`, and returns what each printed as its last
 * stdout line (JSON). A process still running after `timeoutMs` is killed by its PID and fails the run.
 */
export async function runFleet<T>(script: string, inputs: readonly unknown[], timeoutMs: number): Promise<T[]> {
  const path = fileURLToPath(new URL(script, import.meta.url));
  return Promise.all(
    inputs.map(
      (input, index) =>
        new Promise<T>((resolve, reject) => {
          const child = spawn(process.execPath, ['--unhandled-rejections=strict', path], {
            env: { ...process.env, FLEET_INPUT: JSON.stringify(input), FLEET_INDEX: String(index) },
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
          child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
          const timer = setTimeout(() => {
            if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
          }, timeoutMs);
          child.once('exit', (code, signal) => {
            clearTimeout(timer);
            if (code !== 0) {
              reject(new Error(`fleet process ${index} exited with ${code ?? signal}:\n${stderr}\n${stdout.slice(-2_000)}`));
              return;
            }
            const lines = stdout.trim().split('\n');
            try {
              resolve(JSON.parse(lines[lines.length - 1]!) as T);
            } catch (error) {
              reject(new Error(`fleet process ${index} printed no JSON result: ${String(error)}\n${stdout.slice(-2_000)}\n${stderr}`));
            }
          });
        }),
    ),
  );
}
