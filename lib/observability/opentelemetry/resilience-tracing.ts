import { Inject, Injectable, Module, type DynamicModule, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { trace, type Attributes, type Span } from '@opentelemetry/api';
import type { Disposable } from '../../core/events.js';
import { resolveResilience } from '../shared/resilience-refs.js';

/** Which kinds of events become span events (each on by default). */
export interface ResilienceTracingOptions {
  /** Rate-limit, open-circuit and full-bulkhead rejections (shadow-mode refusals included). @default true */
  rejections?: boolean;
  /** Retries and give-ups. @default true */
  retries?: boolean;
  /** Deadlines reached. @default true */
  timeouts?: boolean;
  /** Circuit breaker state changes. @default true */
  stateChanges?: boolean;
  /** Fallbacks that answered in place of an error. @default true */
  fallbacks?: boolean;
}

/** Token of the options of `ResilienceTracingModule`. */
export const RESILIENCE_TRACING_OPTIONS = Symbol('nest-resilience:tracing-options');

/** Names of the span events, as documented in `docs/observability.md`. */
export const SPAN_EVENTS = {
  rateLimitRejected: 'resilience.rate_limit.rejected',
  circuitRejected: 'resilience.circuit_breaker.rejected',
  bulkheadRejected: 'resilience.bulkhead.rejected',
  retry: 'resilience.retry',
  retryGiveUp: 'resilience.retry.give_up',
  timeout: 'resilience.timeout',
  stateChange: 'resilience.circuit_breaker.state_change',
  fallback: 'resilience.fallback',
} as const;

/**
 * Adds span events and attributes to the span active when a policy acts (the HTTP server span of
 * an instrumented application, or a span of your own): rejections, retries, timeouts, state
 * changes, fallbacks. Uses `@opentelemetry/api` only; without an SDK there is no active span and it
 * does nothing. Provided by `ResilienceTracingModule`.
 */
@Injectable()
export class ResilienceTracing implements OnModuleInit, OnModuleDestroy {
  private readonly subscriptions: Disposable[] = [];

  /** Built by Nest's injector from the options of `ResilienceTracingModule.forRoot`. */
  constructor(
    @Inject(RESILIENCE_TRACING_OPTIONS) private readonly options: ResilienceTracingOptions,
    private readonly moduleRef: ModuleRef,
  ) {}

  /** Subscribes to the events of the kinds switched on, when the application starts. */
  onModuleInit(): void {
    const events = resolveResilience(this.moduleRef, 'ResilienceTracingModule').events;
    const on = this.options;
    if (on.rejections !== false) {
      this.subscriptions.push(
        events.onRateLimitDecision(({ limiter, decision, shadow, cost, mode }) => {
          if (mode !== 'consume' || decision.allowed) return;
          const span = activeSpan();
          if (span === undefined) return;
          span.addEvent(SPAN_EVENTS.rateLimitRejected, {
            'resilience.policy': limiter,
            'resilience.rate_limit.cost': cost,
            'resilience.rate_limit.shadow': shadow,
            ...(decision.retryAfterMs === undefined ? {} : { 'resilience.rate_limit.retry_after_ms': decision.retryAfterMs }),
          });
          if (!shadow) rejected(span, 'rate_limit', limiter);
        }),
        events.onCircuitCall(({ breaker, outcome, shadow, error }) => {
          if (outcome !== 'rejected') return;
          const span = activeSpan();
          if (span === undefined) return;
          const state = (error as { state?: unknown } | undefined)?.state;
          span.addEvent(SPAN_EVENTS.circuitRejected, {
            'resilience.policy': breaker,
            'resilience.circuit_breaker.shadow': shadow === true,
            ...(typeof state === 'string' ? { 'resilience.circuit_breaker.state': state } : {}),
          });
          if (shadow !== true) rejected(span, 'circuit_breaker', breaker);
        }),
        events.onBulkheadReject(({ bulkhead, reason, active, queued }) => {
          const span = activeSpan();
          if (span === undefined) return;
          span.addEvent(SPAN_EVENTS.bulkheadRejected, {
            'resilience.policy': bulkhead,
            'resilience.bulkhead.reason': reason,
            'resilience.bulkhead.active': active,
            'resilience.bulkhead.queued': queued,
          });
          rejected(span, 'bulkhead', bulkhead);
        }),
      );
    }
    if (on.retries !== false) {
      this.subscriptions.push(
        events.onRetry(({ policy, attempt, delayMs, error }) => {
          const span = activeSpan();
          if (span === undefined) return;
          span.addEvent(SPAN_EVENTS.retry, { 'resilience.policy': policy, 'resilience.retry.attempt': attempt, 'resilience.retry.delay_ms': delayMs, ...errorAttributes(error) });
          span.setAttribute('resilience.retry.attempts', attempt + 1);
        }),
        events.onRetryGiveUp(({ policy, attempts, reason, error }) => {
          const span = activeSpan();
          if (span === undefined) return;
          span.addEvent(SPAN_EVENTS.retryGiveUp, { 'resilience.policy': policy, 'resilience.retry.attempts': attempts, 'resilience.retry.reason': reason, ...errorAttributes(error) });
          span.setAttributes({ 'resilience.retry.attempts': attempts, 'resilience.retry.gave_up': true });
        }),
      );
    }
    if (on.timeouts !== false) {
      this.subscriptions.push(
        events.onTimeout(({ policy, timeoutMs }) => {
          const span = activeSpan();
          if (span === undefined) return;
          span.addEvent(SPAN_EVENTS.timeout, { 'resilience.policy': policy, 'resilience.timeout.ms': timeoutMs });
          span.setAttribute('resilience.timed_out', true);
        }),
      );
    }
    if (on.stateChanges !== false) {
      this.subscriptions.push(
        events.onCircuitStateChange(({ breaker, from, to, reason }) => {
          const span = activeSpan();
          if (span === undefined) return;
          span.addEvent(SPAN_EVENTS.stateChange, {
            'resilience.policy': breaker,
            'resilience.circuit_breaker.from': from,
            'resilience.circuit_breaker.to': to,
            'resilience.circuit_breaker.reason': reason,
          });
        }),
      );
    }
    if (on.fallbacks !== false) {
      this.subscriptions.push(
        events.onFallback(({ policy, error }) => {
          const span = activeSpan();
          if (span === undefined) return;
          span.addEvent(SPAN_EVENTS.fallback, { 'resilience.policy': policy, ...errorAttributes(error) });
          span.setAttribute('resilience.fallback', true);
        }),
      );
    }
  }

  /** Unsubscribes, when the application shuts down. */
  onModuleDestroy(): void {
    for (const subscription of this.subscriptions.splice(0)) subscription.dispose();
  }
}

/** The active span when it records (an SDK is installed and the span is sampled). */
function activeSpan(): Span | undefined {
  const span = trace.getActiveSpan();
  return span !== undefined && span.isRecording() ? span : undefined;
}

function rejected(span: Span, by: 'rate_limit' | 'circuit_breaker' | 'bulkhead', policy: string): void {
  span.setAttributes({ 'resilience.rejected': true, 'resilience.rejected_by': by, 'resilience.rejected_policy': policy });
}

/** The semantic-convention attributes of an exception, without its stack. */
function errorAttributes(error: unknown): Attributes {
  if (error instanceof Error) return { 'exception.type': error.name, 'exception.message': error.message };
  return error === undefined ? {} : { 'exception.message': String(error) };
}

/**
 * OpenTelemetry span events and attributes for every policy, through `@opentelemetry/api` (an
 * optional peer dependency). Import it once, next to `ResilienceModule`; with no SDK installed it
 * does nothing.
 *
 * @example
 * imports: [ResilienceModule.forRoot({ isGlobal: true }), ResilienceTracingModule.forRoot()]
 */
@Module({})
export class ResilienceTracingModule {
  /** Adds the events of the kinds not switched off in `options`. */
  static forRoot(options: ResilienceTracingOptions = {}): DynamicModule {
    return {
      module: ResilienceTracingModule,
      providers: [{ provide: RESILIENCE_TRACING_OPTIONS, useValue: options }, ResilienceTracing],
      exports: [ResilienceTracing],
    };
  }
}
