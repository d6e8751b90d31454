// OpenTelemetry span events and attributes, through an in-memory span exporter, with a span made
// active around each call (provider methods) or around each request (a middleware, for the guard).
import { Controller, Get, Injectable, type INestApplication } from '@nestjs/common';
import { context, trace, type Tracer } from '@opentelemetry/api';
import { AsyncHooksContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Bulkhead, CircuitBreaker, Fallback, getAbortSignal, RateLimit, ResilienceModule, Retry, Timeout } from 'nest-resilience';
import { ResilienceTracingModule, SPAN_EVENTS } from '../../lib/opentelemetry.js';
import { createApp, gate, until, type TestApp } from './support/app.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer: Tracer = provider.getTracer('nest-resilience-test');
const contextManager = new AsyncHooksContextManager();

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(async () => {
  context.disable();
  await provider.shutdown();
});

const held = { gate: gate(), entered: 0 };

@Injectable()
class Downstream {
  @Retry({ maxAttempts: 2, delay: 1, jitter: 'none' })
  async retried(): Promise<string> {
    throw new TypeError('flaky');
  }

  @Timeout(10)
  async slow(): Promise<string> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2_000);
      getAbortSignal()?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    return 'late';
  }

  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
  async fragile(): Promise<string> {
    throw new Error('down');
  }

  @RateLimit({ limit: 1, window: '1m', key: 'global' })
  async limited(): Promise<string> {
    return 'ok';
  }

  @Bulkhead({ maxConcurrent: 1 })
  async narrow(): Promise<string> {
    held.entered++;
    await held.gate.promise;
    return 'done';
  }

  @Fallback({ value: 'cached' })
  async withFallback(): Promise<string> {
    throw new Error('use the cache');
  }
}

@Controller('api')
class ApiController {
  @Get('limited')
  @RateLimit({ limit: 1, window: '1m' })
  limited() {
    return 'ok';
  }
}

/** Runs `fn` inside an active span and returns the span once ended. */
async function inSpan(name: string, fn: () => Promise<unknown>): Promise<ReadableSpan> {
  await tracer.startActiveSpan(name, async (span) => {
    try {
      await fn();
    } catch {
      // The errors are the point of these calls.
    } finally {
      span.end();
    }
  });
  const found = exporter.getFinishedSpans().find((candidate) => candidate.name === name);
  if (found === undefined) throw new Error(`span ${name} not exported`);
  return found;
}

function events(span: ReadableSpan): Array<{ name: string; attributes: Record<string, unknown> }> {
  return span.events.map((event) => ({ name: event.name, attributes: { ...event.attributes } }));
}

const open: TestApp[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((app) => app.close()));
  exporter.reset();
  held.gate = gate();
  held.entered = 0;
});

async function tracingApp(configure?: (app: INestApplication) => void, options = {}) {
  const app = await createApp('express', { imports: [ResilienceModule.forRoot(), ResilienceTracingModule.forRoot(options)], providers: [Downstream], controllers: [ApiController] }, { configure });
  open.push(app);
  return app;
}

describe('ResilienceTracingModule', () => {
  it('records retries and the give-up on the active span', async () => {
    const app = await tracingApp();
    const downstream = app.app.get(Downstream);
    const span = await inSpan('retried', () => downstream.retried());
    expect(events(span)).toEqual([
      {
        name: SPAN_EVENTS.retry,
        attributes: { 'resilience.policy': 'Downstream.retried', 'resilience.retry.attempt': 1, 'resilience.retry.delay_ms': 1, 'exception.type': 'TypeError', 'exception.message': 'flaky' },
      },
      {
        name: SPAN_EVENTS.retryGiveUp,
        attributes: { 'resilience.policy': 'Downstream.retried', 'resilience.retry.attempts': 2, 'resilience.retry.reason': 'exhausted', 'exception.type': 'TypeError', 'exception.message': 'flaky' },
      },
    ]);
    expect(span.attributes).toMatchObject({ 'resilience.retry.attempts': 2, 'resilience.retry.gave_up': true });
  });

  it('records a timeout', async () => {
    const app = await tracingApp();
    const span = await inSpan('slow', () => app.app.get(Downstream).slow());
    expect(events(span)).toEqual([{ name: SPAN_EVENTS.timeout, attributes: { 'resilience.policy': 'Downstream.slow', 'resilience.timeout.ms': 10 } }]);
    expect(span.attributes['resilience.timed_out']).toBe(true);
  });

  it('records the state change on the call that tripped the breaker, and the rejection on the next one', async () => {
    const app = await tracingApp();
    const downstream = app.app.get(Downstream);
    const tripped = await inSpan('tripped', () => downstream.fragile());
    expect(events(tripped)).toEqual([
      {
        name: SPAN_EVENTS.stateChange,
        attributes: { 'resilience.policy': 'Downstream.fragile', 'resilience.circuit_breaker.from': 'CLOSED', 'resilience.circuit_breaker.to': 'OPEN', 'resilience.circuit_breaker.reason': 'consecutiveFailures' },
      },
    ]);
    const refused = await inSpan('refused', () => downstream.fragile());
    expect(events(refused)).toEqual([
      { name: SPAN_EVENTS.circuitRejected, attributes: { 'resilience.policy': 'Downstream.fragile', 'resilience.circuit_breaker.shadow': false, 'resilience.circuit_breaker.state': 'OPEN' } },
    ]);
    expect(refused.attributes).toMatchObject({ 'resilience.rejected': true, 'resilience.rejected_by': 'circuit_breaker', 'resilience.rejected_policy': 'Downstream.fragile' });
  });

  it('records rate-limit and bulkhead rejections, and fallbacks', async () => {
    const app = await tracingApp();
    const downstream = app.app.get(Downstream);
    expect(events(await inSpan('first', () => downstream.limited()))).toEqual([]);
    const limited = await inSpan('second', () => downstream.limited());
    expect(events(limited)).toEqual([
      {
        name: SPAN_EVENTS.rateLimitRejected,
        attributes: { 'resilience.policy': 'Downstream.limited', 'resilience.rate_limit.cost': 1, 'resilience.rate_limit.shadow': false, 'resilience.rate_limit.retry_after_ms': expect.any(Number) },
      },
    ]);
    expect(limited.attributes['resilience.rejected_by']).toBe('rate_limit');

    const running = downstream.narrow();
    await until(() => held.entered === 1);
    const narrow = await inSpan('narrow', () => downstream.narrow());
    held.gate.open();
    await running;
    expect(events(narrow)).toEqual([
      { name: SPAN_EVENTS.bulkheadRejected, attributes: { 'resilience.policy': 'Downstream.narrow', 'resilience.bulkhead.reason': 'full', 'resilience.bulkhead.active': 1, 'resilience.bulkhead.queued': 0 } },
    ]);
    expect(narrow.attributes['resilience.rejected_by']).toBe('bulkhead');

    const fallback = await inSpan('fallback', () => downstream.withFallback());
    expect(events(fallback)).toEqual([{ name: SPAN_EVENTS.fallback, attributes: { 'resilience.policy': 'Downstream.withFallback', 'exception.type': 'Error', 'exception.message': 'use the cache' } }]);
    expect(fallback.attributes['resilience.fallback']).toBe(true);
  });

  it('records a rejection by the guard on the request span', async () => {
    const app = await tracingApp((nest) => {
      // What HTTP instrumentation does: one active span per request, ended when the response is sent.
      nest.use((req: { url: string }, res: { on(event: string, listener: () => void): void }, next: () => void) => {
        tracer.startActiveSpan(`GET ${req.url}`, (span) => {
          res.on('finish', () => span.end());
          next();
        });
      });
    });
    expect((await request(app.server).get('/api/limited')).status).toBe(200);
    expect((await request(app.server).get('/api/limited')).status).toBe(429);
    await until(() => exporter.getFinishedSpans().length === 2);
    const [first, second] = exporter.getFinishedSpans();
    expect(events(first!)).toEqual([]);
    expect(events(second!).map((event) => event.name)).toEqual([SPAN_EVENTS.rateLimitRejected]);
    expect(second!.attributes).toMatchObject({ 'resilience.rejected_by': 'rate_limit', 'resilience.rejected_policy': 'ApiController.limited' });
  });

  it('adds nothing outside a span, and only the kinds switched on', async () => {
    const app = await tracingApp(undefined, { retries: false });
    const downstream = app.app.get(Downstream);
    await expect(downstream.fragile()).rejects.toThrow('down');
    expect(trace.getActiveSpan()).toBeUndefined();
    const span = await inSpan('retried', () => downstream.retried());
    expect(events(span)).toEqual([]);
  });
});
