// A fresh application as the NestJS 12 CLI generates it (`nest new`, the default TypeScript
// template of @nestjs/schematics 12: CommonJS output, `module`/`moduleResolution` nodenext,
// extensionless relative imports), with the package added the way its README says.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The runtime dependencies of the CLI template. */
const TEMPLATE_DEPENDENCIES = {
  '@nestjs/common': '^12.0.1',
  '@nestjs/core': '^12.0.1',
  '@nestjs/platform-express': '^12.0.1',
  'reflect-metadata': '^0.2.2',
  rxjs: '^7.8.1',
};

/** The template's tsconfig.json (`strict` answered yes; no `jest` types, the test runner is not installed). */
const TSCONFIG = {
  compilerOptions: {
    module: 'nodenext',
    moduleResolution: 'nodenext',
    resolvePackageJsonExports: true,
    esModuleInterop: true,
    isolatedModules: true,
    declaration: true,
    removeComments: true,
    emitDecoratorMetadata: true,
    experimentalDecorators: true,
    allowSyntheticDefaultImports: true,
    target: 'ES2023',
    types: ['node'],
    sourceMap: true,
    outDir: './dist',
    rootDir: '.',
    incremental: true,
    skipLibCheck: true,
    strict: true,
    strictPropertyInitialization: false,
  },
};

/** What `nest build` compiles: the template's tsconfig.build.json. */
const TSCONFIG_BUILD = {
  extends: './tsconfig.json',
  compilerOptions: { rootDir: './src' },
  include: ['src'],
  exclude: ['node_modules', 'test', 'dist', '**/*spec.ts'],
};

/**
 * The same entry points for an application built by a bundler: `moduleResolution: bundler`, and
 * the declarations of every package checked (`skipLibCheck` off), ours included.
 */
const TSCONFIG_BUNDLER = {
  compilerOptions: {
    module: 'preserve',
    moduleResolution: 'bundler',
    target: 'ES2023',
    types: ['node'],
    strict: true,
    noEmit: true,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    skipLibCheck: false,
  },
  files: ['src/entry-points.ts'],
};

const MAIN = `import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';

async function bootstrap() {
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  await app.listen(process.env.PORT ?? 3000, '127.0.0.1');
  console.log(\`listening on \${await app.getUrl()}\`);
}
void bootstrap();
`;

const APP_MODULE = `import { Module } from '@nestjs/common';
import { ResilienceModule } from 'nest-resilience';
import { ResiliencePrometheusModule } from 'nest-resilience/prometheus';
import { AppController } from './app.controller';
import { AppService } from './app.service';

@Module({
  imports: [ResilienceModule.forRoot({ isGlobal: true }), ResiliencePrometheusModule.forRoot({ path: 'metrics' })],
  controllers: [AppController],
  providers: [AppService],
})
export class AppModule {}
`;

const APP_CONTROLLER = `import { Controller, Get } from '@nestjs/common';
import { RateLimit } from 'nest-resilience';
import { AppService } from './app.service';
import { entryPoints } from './entry-points';

@Controller()
export class AppController {
  constructor(private readonly appService: AppService) {}

  @Get()
  @RateLimit({ limit: 1, window: '1m' })
  getHello(): string {
    return this.appService.getHello();
  }

  @Get('entry-points')
  entryPoints(): Record<string, string> {
    return Object.fromEntries(Object.entries(entryPoints).map(([name, value]) => [name, typeof value]));
  }
}
`;

const APP_SERVICE = `import { Injectable } from '@nestjs/common';

@Injectable()
export class AppService {
  getHello(): string {
    return 'Hello World!';
  }
}
`;

/** One value and one type from each entry point, so neither import is elided nor unchecked. */
const ENTRY_POINTS = `import { isRateLimitExceededError, ResilienceModule, type ResilienceModuleOptions } from 'nest-resilience';
import { ResilienceTracingModule, type ResilienceTracingOptions } from 'nest-resilience/opentelemetry';
import { ResiliencePrometheusModule, type ResiliencePrometheusOptions } from 'nest-resilience/prometheus';
import { RedisStore, type RedisStoreOptions } from 'nest-resilience/redis';
import { ResilienceHealthModule, type CircuitBreakerHealthOptions } from 'nest-resilience/terminus';

export const options: {
  root: ResilienceModuleOptions;
  tracing: ResilienceTracingOptions;
  prometheus: ResiliencePrometheusOptions;
  redis?: RedisStoreOptions;
  health?: CircuitBreakerHealthOptions;
} = { root: { policies: { payments: { timeout: '2s' } } }, tracing: {}, prometheus: { path: 'metrics' } };

export const entryPoints = {
  'nest-resilience': ResilienceModule,
  'nest-resilience (a function)': isRateLimitExceededError,
  'nest-resilience/opentelemetry': ResilienceTracingModule,
  'nest-resilience/prometheus': ResiliencePrometheusModule,
  'nest-resilience/redis': RedisStore,
  'nest-resilience/terminus': ResilienceHealthModule,
};
`;

/** An ES module of the same application importing every entry point (`.mts`: emitted as ESM). */
const ESM_CHECK = `import * as root from 'nest-resilience';
import * as opentelemetry from 'nest-resilience/opentelemetry';
import * as prometheus from 'nest-resilience/prometheus';
import * as redis from 'nest-resilience/redis';
import * as terminus from 'nest-resilience/terminus';

const loaded = {
  'nest-resilience': typeof root.ResilienceModule,
  'nest-resilience/opentelemetry': typeof opentelemetry.ResilienceTracingModule,
  'nest-resilience/prometheus': typeof prometheus.ResiliencePrometheusModule,
  'nest-resilience/redis': typeof redis.RedisStore,
  'nest-resilience/terminus': typeof terminus.ResilienceHealthModule,
};
console.log(JSON.stringify(loaded));
`;

/**
 * Writes the application into `dir`, depending on the package through `tarball`. `peers` are the
 * optional peer dependencies its entry points need, in the ranges the repository tests with.
 */
export function writeNestApp(dir: string, tarball: string, peers: Record<string, string>): void {
  const files: Record<string, string> = {
    'package.json': json({
      name: 'packed-consumer',
      version: '0.0.1',
      private: true,
      license: 'UNLICENSED',
      scripts: { build: 'tsc -p tsconfig.build.json', 'start:prod': 'node dist/main' },
      dependencies: { ...TEMPLATE_DEPENDENCIES, ...peers, 'nest-resilience': `file:${tarball}` },
      devDependencies: { '@types/node': '^24.0.0' },
    }),
    'tsconfig.json': json(TSCONFIG),
    'tsconfig.build.json': json(TSCONFIG_BUILD),
    'tsconfig.bundler.json': json(TSCONFIG_BUNDLER),
    'src/main.ts': MAIN,
    'src/app.module.ts': APP_MODULE,
    'src/app.controller.ts': APP_CONTROLLER,
    'src/app.service.ts': APP_SERVICE,
    'src/entry-points.ts': ENTRY_POINTS,
    'src/esm-check.mts': ESM_CHECK,
  };
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
