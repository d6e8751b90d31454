// Builds the package the way it is published, into a folder of its own: the repository's `dist/`
// is never touched, so a test run cannot disturb a build or a benchmark using it.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root folder. */
export const root = fileURLToPath(new URL('../../..', import.meta.url));

/** The TypeScript compiler the repository builds with. */
export const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/** The files npm adds to every package besides those of `files` (package.json, README, LICENSE). */
const PACKAGE_FILES = ['package.json', 'README.md', 'LICENSE'];

/**
 * The environment for an npm command of a test: npm's script variables of the run that started
 * the tests (`npm test`) name the repository as the project, so they are left out.
 */
export function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_(package_|lifecycle_|config_local_prefix$)/.test(name)));
}

/** Runs a command; rejects with its output when it fails, so a failing step says why. */
export function run(command: string, args: readonly string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd: options.cwd, env: options.env ?? process.env, timeout: options.timeoutMs ?? 240_000, maxBuffer: 64 * 1024 * 1024, shell: process.platform === 'win32' && command === 'npm' },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${command} ${args.join(' ')} failed in ${options.cwd}:\n${stdout}${stderr}`, { cause: error }));
        else resolve({ stdout, stderr });
      },
    );
  });
}

/**
 * Lays the package out in `dir` as npm would publish it from the repository: `npm run build`
 * emitting into `dir/dist`, next to copies of package.json, README.md and LICENSE.
 */
export async function stagePackage(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const file of PACKAGE_FILES) copyFileSync(join(root, file), join(dir, file));
  await run('npm', ['run', 'build', '--silent', '--', '--outDir', join(dir, 'dist')], { cwd: root, env: npmEnv() });
}
