import { Inject, Injectable, Logger, Module, type DynamicModule, type LoggerService, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { InvalidOptionError } from '../../core/errors.js';
import type { Disposable } from '../../core/events.js';
import { resolveResilience } from '../shared/resilience-refs.js';

/**
 * The kinds of log lines:
 * - `stateChange`: a circuit breaker changed state;
 * - `rejection`: a rate limit, an open circuit or a full bulkhead refused a call (shadow-mode refusals too);
 * - `retry`: an attempt failed and another follows;
 * - `retryGiveUp`: a retry gave up;
 * - `timeout`: a call reached its deadline;
 * - `fallback`: a fallback answered in place of an error;
 * - `storeFallback`: the store could not decide and its failure policy did (`fail-open`, `local`);
 * - `call`: every call through a breaker and every admitted rate-limit decision (verbose).
 */
export type ResilienceLogKind = 'stateChange' | 'rejection' | 'retry' | 'retryGiveUp' | 'timeout' | 'fallback' | 'storeFallback' | 'call';

/** A Nest log level, or `false` for no line. */
export type ResilienceLogLevel = 'fatal' | 'error' | 'warn' | 'log' | 'debug' | 'verbose' | false;

/** Options of `ResilienceLoggingModule.forRoot`. */
export interface ResilienceLoggingOptions {
  /**
   * The level of each kind of line; `false` switches a kind off.
   * @default { stateChange: 'warn', call: false, every other kind: 'debug' }
   */
  levels?: Partial<Record<ResilienceLogKind, ResilienceLogLevel>>;
  /** Where lines go. @default Nest's `Logger` (the application's logger, as set by `app.useLogger`) */
  logger?: LoggerService;
  /** The context printed with each line. @default 'Resilience' */
  context?: string;
}

/** Token of the options of `ResilienceLoggingModule`. */
export const RESILIENCE_LOGGING_OPTIONS = Symbol('nest-resilience:logging-options');

/** The levels used where `levels` says nothing. */
export const DEFAULT_LOG_LEVELS: Readonly<Record<ResilienceLogKind, ResilienceLogLevel>> = Object.freeze({
  stateChange: 'warn',
  rejection: 'debug',
  retry: 'debug',
  retryGiveUp: 'debug',
  timeout: 'debug',
  fallback: 'debug',
  storeFallback: 'debug',
  call: false,
});

const MAX_ERROR_TEXT = 200;
const LEVELS: readonly ResilienceLogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose', false];

/**
 * Writes the policies' events to Nest's logger: breaker state changes at warn, other events at
 * debug, per-call lines off; each kind configurable. Subscribes only to the events of the kinds
 * switched on. Provided by `ResilienceLoggingModule`.
 */
@Injectable()
export class ResilienceLogger implements OnModuleInit, OnModuleDestroy {
  private readonly levels: Record<ResilienceLogKind, ResilienceLogLevel>;
  private readonly logger: LoggerService;
  private readonly context: string;
  private readonly subscriptions: Disposable[] = [];

  /**
   * Built by Nest's injector from the options of `ResilienceLoggingModule.forRoot`.
   * @throws InvalidOptionError for an unknown kind or level in `levels`.
   */
  constructor(
    @Inject(RESILIENCE_LOGGING_OPTIONS) options: ResilienceLoggingOptions,
    private readonly moduleRef: ModuleRef,
  ) {
    this.levels = { ...DEFAULT_LOG_LEVELS, ...options.levels };
    for (const [kind, level] of Object.entries(options.levels ?? {})) {
      const where = 'ResilienceLoggingModule.forRoot';
      if (!(kind in DEFAULT_LOG_LEVELS)) throw new InvalidOptionError(`levels.${kind}`, level, `a known kind: ${Object.keys(DEFAULT_LOG_LEVELS).join(', ')}`, where);
      if (!LEVELS.includes(level)) throw new InvalidOptionError(`levels.${kind}`, level, "'fatal', 'error', 'warn', 'log', 'debug', 'verbose' or false", where);
    }
    this.context = options.context ?? 'Resilience';
    this.logger = options.logger ?? new Logger(this.context);
  }

  /** Subscribes to the events of the kinds switched on, when the application starts. */
  onModuleInit(): void {
    const events = resolveResilience(this.moduleRef, 'ResilienceLoggingModule').events;
    const on = (kind: ResilienceLogKind): boolean => this.levels[kind] !== false;
    const push = (subscription: Disposable): void => {
      this.subscriptions.push(subscription);
    };

    if (on('stateChange')) {
      push(events.onCircuitStateChange(({ breaker, from, to, reason }) => this.write('stateChange', `Circuit breaker "${breaker}": ${from} → ${to} (${reason})`)));
    }
    if (on('rejection') || on('call')) {
      push(
        events.onCircuitCall(({ breaker, outcome, slow, durationMs, error, shadow }) => {
          if (outcome === 'rejected') {
            this.write('rejection', `Circuit breaker "${breaker}" ${shadow ? 'would have refused (shadow mode)' : 'refused'} a call: ${describeError(error)}`);
          } else {
            this.write('call', `Circuit breaker "${breaker}": ${outcome}${slow ? ', slow' : ''} in ${Math.round(durationMs)} ms${error === undefined ? '' : `: ${describeError(error)}`}`);
          }
        }),
      );
    }
    if (on('rejection')) {
      push(
        events.onBulkheadReject(({ bulkhead, reason, active, queued }) =>
          this.write('rejection', `Bulkhead "${bulkhead}" refused a call (${reason}; ${active} running, ${queued} queued)`),
        ),
      );
    }
    if (on('rejection') || on('storeFallback') || on('call')) {
      push(
        events.onRateLimitDecision(({ limiter, key, cost, decision, shadow, mode }) => {
          if (mode !== 'consume') return;
          if (decision.degraded !== undefined) {
            this.write('storeFallback', `Rate limit "${limiter}": the store could not decide; ${decision.degraded === 'local' ? 'the local limiter' : 'fail-open'} ${decision.allowed ? 'admitted' : 'refused'} key "${key}"`);
          }
          if (decision.allowed) {
            this.write('call', `Rate limit "${limiter}" admitted key "${key}" (cost ${cost})`);
            return;
          }
          const wait = decision.retryAfterMs === undefined ? 'never fits' : `retry after ${Math.ceil(decision.retryAfterMs)} ms`;
          this.write('rejection', `Rate limit "${limiter}" ${shadow ? 'would have refused (shadow mode)' : 'refused'} key "${key}" (cost ${cost}; ${wait})`);
        }),
      );
    }
    if (on('retry')) {
      push(events.onRetry(({ policy, attempt, delayMs, error }) => this.write('retry', `Retry "${policy}": attempt ${attempt} failed (${describeError(error)}); next in ${Math.round(delayMs)} ms`)));
    }
    if (on('retryGiveUp')) {
      push(
        events.onRetryGiveUp(({ policy, attempts, reason, error }) =>
          this.write('retryGiveUp', `Retry "${policy}" gave up after ${attempts} attempt${attempts === 1 ? '' : 's'} (${reason}): ${describeError(error)}`),
        ),
      );
    }
    if (on('timeout')) {
      push(events.onTimeout(({ policy, timeoutMs }) => this.write('timeout', `Timeout "${policy}": no result within ${Math.round(timeoutMs)} ms`)));
    }
    if (on('fallback')) {
      push(events.onFallback(({ policy, error }) => this.write('fallback', `Fallback "${policy}" answered in place of ${describeError(error)}`)));
    }
  }

  /** Unsubscribes, when the application shuts down. */
  onModuleDestroy(): void {
    for (const subscription of this.subscriptions.splice(0)) subscription.dispose();
  }

  private write(kind: ResilienceLogKind, message: string): void {
    const level = this.levels[kind];
    if (level === false) return;
    const logger = this.logger;
    // A Nest Logger carries its context; a plain LoggerService takes it as the last argument.
    if (logger instanceof Logger) {
      logger[level](message);
      return;
    }
    const method = logger[level] ?? logger.log;
    method.call(logger, message, this.context);
  }
}

/** `Name: message`, cut to a length that keeps a log line a line. */
function describeError(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT - 1)}…` : text;
}

/**
 * Logging of the policies' events through Nest's `Logger`. Nothing is logged unless you import
 * it (quiet by default); then breaker state changes go out at warn and the other events at
 * debug, each kind configurable.
 *
 * @example
 * ResilienceLoggingModule.forRoot({ levels: { rejection: 'log', retry: false } })
 */
@Module({})
export class ResilienceLoggingModule {
  /** Logs the kinds of events `options.levels` switches on (see {@link DEFAULT_LOG_LEVELS}). */
  static forRoot(options: ResilienceLoggingOptions = {}): DynamicModule {
    return {
      module: ResilienceLoggingModule,
      providers: [{ provide: RESILIENCE_LOGGING_OPTIONS, useValue: options }, ResilienceLogger],
      exports: [ResilienceLogger],
    };
  }
}
