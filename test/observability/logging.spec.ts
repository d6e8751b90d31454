// Logging through Nest's logger, captured by a custom LoggerService.
import { Controller, Get, Injectable, type LoggerService } from '@nestjs/common';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { Bulkhead, CircuitBreaker, Fallback, getAbortSignal, InvalidOptionError, RateLimit, ResilienceModule, Retry, Timeout } from 'nest-resilience';
import { ResilienceLoggingModule } from '../../lib/observability/logging/index.js';
import { createApp, gate, until, type TestApp } from './support/app.js';

type Level = 'log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal';

/** Keeps every line with its level and context. */
class CapturingLogger implements LoggerService {
  readonly lines: Array<{ level: Level; message: string; context: unknown }> = [];
  log = this.capture('log');
  error = this.capture('error');
  warn = this.capture('warn');
  debug = this.capture('debug');
  verbose = this.capture('verbose');
  fatal = this.capture('fatal');

  /** Our lines as `level message`. */
  ours(): string[] {
    return this.lines.filter((line) => line.context === 'Resilience').map((line) => `${line.level} ${line.message}`);
  }

  private capture(level: Level) {
    return (message: unknown, ...rest: unknown[]) => {
      this.lines.push({ level, message: String(message), context: rest.at(-1) });
    };
  }
}

const held = { gate: gate(), entered: 0 };

@Injectable()
class Downstream {
  @Retry({ maxAttempts: 2, delay: 1, jitter: 'none' })
  async retried(): Promise<string> {
    throw new Error('flaky');
  }
}

@Controller('api')
class ApiController {
  constructor(private readonly downstream: Downstream) {}

  @Get('limited')
  @RateLimit({ limit: 1, window: '1m' })
  limited() {
    return 'ok';
  }

  @Get('fragile')
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
  fragile(): never {
    throw new Error('down');
  }

  @Get('retried')
  retried() {
    return this.downstream.retried();
  }

  @Get('slow')
  @Timeout(10)
  async slow() {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2_000);
      getAbortSignal()?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  @Get('fallback')
  @Fallback({ value: 'cached' })
  fallback(): never {
    throw new Error('use the cache');
  }

  @Get('narrow')
  @Bulkhead({ maxConcurrent: 1 })
  async narrow() {
    held.entered++;
    await held.gate.promise;
    return 'done';
  }
}

const open: TestApp[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((app) => app.close()));
  held.gate = gate();
  held.entered = 0;
});

async function loggingApp(logger: CapturingLogger, module: ReturnType<typeof ResilienceLoggingModule.forRoot>) {
  const app = await createApp('express', { imports: [ResilienceModule.forRoot(), module], controllers: [ApiController], providers: [Downstream] }, { logger });
  open.push(app);
  return app;
}

async function script(app: TestApp): Promise<void> {
  await request(app.server).get('/api/limited');
  await request(app.server).get('/api/limited');
  await request(app.server).get('/api/fragile');
  await request(app.server).get('/api/fragile');
  await request(app.server).get('/api/retried');
  await request(app.server).get('/api/slow');
  await request(app.server).get('/api/fallback');
  const running = request(app.server).get('/api/narrow').then((response) => response.status);
  await until(() => held.entered === 1);
  await request(app.server).get('/api/narrow');
  held.gate.open();
  await running;
}

describe('ResilienceLoggingModule', () => {
  it('logs state changes at warn and the other events at debug, through the application logger, and no per-call lines', async () => {
    const logger = new CapturingLogger();
    const app = await loggingApp(logger, ResilienceLoggingModule.forRoot());
    await script(app);
    expect(logger.ours()).toEqual([
      expect.stringMatching(/^debug Rate limit "ApiController\.limited" refused key "[^"]+" \(cost 1; retry after \d+ ms\)$/),
      'warn Circuit breaker "ApiController.fragile": CLOSED → OPEN (consecutiveFailures)',
      expect.stringMatching(/^debug Circuit breaker "ApiController\.fragile" refused a call: CircuitOpenError: Circuit "ApiController\.fragile" is open; next probe in \d+ ms$/),
      'debug Retry "Downstream.retried": attempt 1 failed (Error: flaky); next in 1 ms',
      'debug Retry "Downstream.retried" gave up after 2 attempts (exhausted): Error: flaky',
      'debug Timeout "ApiController.slow": no result within 10 ms',
      'debug Fallback "ApiController.fallback" answered in place of Error: use the cache',
      'debug Bulkhead "ApiController.narrow" refused a call (full; 1 running, 0 queued)',
    ]);
  });

  it('takes a level per kind, false to switch one off, and a logger of its own', async () => {
    const appLogger = new CapturingLogger();
    const own = new CapturingLogger();
    const app = await loggingApp(
      appLogger,
      ResilienceLoggingModule.forRoot({ logger: own, levels: { stateChange: 'error', rejection: false, retry: false, retryGiveUp: 'log', timeout: false, fallback: false, call: 'verbose' } }),
    );
    await request(app.server).get('/api/limited');
    await request(app.server).get('/api/limited');
    await request(app.server).get('/api/fragile');
    await request(app.server).get('/api/retried');
    expect(appLogger.ours()).toEqual([]);
    expect(own.ours()).toEqual([
      expect.stringMatching(/^verbose Rate limit "ApiController\.limited" admitted key "[^"]+" \(cost 1\)$/),
      expect.stringMatching(/^verbose Circuit breaker "ApiController\.fragile": failure in \d+ ms: Error: down$/),
      'error Circuit breaker "ApiController.fragile": CLOSED → OPEN (consecutiveFailures)',
      'log Retry "Downstream.retried" gave up after 2 attempts (exhausted): Error: flaky',
    ]);
  });

  it('refuses an unknown level or kind when the application starts', async () => {
    const logger = new CapturingLogger();
    await expect(loggingApp(logger, ResilienceLoggingModule.forRoot({ levels: { stateChange: 'info' as never } }))).rejects.toThrow(InvalidOptionError);
    await expect(loggingApp(logger, ResilienceLoggingModule.forRoot({ levels: { statechange: 'warn' } as never }))).rejects.toThrow(
      /ResilienceLoggingModule\.forRoot: invalid option "levels\.statechange": got "warn"; expected a known kind/,
    );
  });
});
