// The e2e suites again, on NestJS 11: every `@nestjs/*` import (the tests', the library's, and
// through Node's resolution those of Nest's own packages) comes from a NestJS 11 install outside
// the repository. `npm run test:nest11`; part of `npm test`.
import { defineConfig } from 'vitest/config';
import { ensureNest11, nest11Packages } from './test/compat/nest11.js';
import base from './vitest.config.js';

const { dir, installMs } = ensureNest11();
const packages = nest11Packages(dir);
console.log(
  `NestJS 11 run (${installMs === undefined ? 'cached' : `installed in ${(installMs / 1000).toFixed(1)} s`}, ${dir}): ${packages.map(({ name, version }) => `${name}@${version}`).join(', ')}`,
);

export default defineConfig({
  ...base,
  resolve: {
    ...base.resolve,
    alias: {
      ...(base.resolve?.alias as Record<string, string>),
      // `@nestjs/core` also matches `@nestjs/core/<file>`: deep imports follow.
      ...Object.fromEntries(packages.map(({ name, path }) => [name, path])),
    },
  },
  test: {
    ...base.test,
    include: ['test/compat/**/*.compat.ts', 'test/nest/**/*.spec.ts', 'test/sample-app/**/*.spec.ts', 'test/observability/**/*.spec.ts'],
    // Reads source files only: nothing in it depends on the NestJS version.
    exclude: ['test/observability/entry-points.spec.ts'],
    // None of these tests uses the shared redis-server.
    globalSetup: [],
  },
});
