// Without an OpenTelemetry SDK (no context manager, no tracer provider) the tracing module does
// nothing and the policies behave as without it.
import { Injectable } from '@nestjs/common';
import { trace } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { CircuitBreaker, CircuitOpenError, ResilienceModule, Retry } from 'nest-resilience';
import { ResilienceTracingModule } from '../../lib/opentelemetry.js';
import { createApp, type TestApp } from './support/app.js';

@Injectable()
class Downstream {
  attempts = 0;

  @Retry({ maxAttempts: 2, delay: 1, jitter: 'none' })
  @CircuitBreaker({ consecutiveFailures: 1, openDuration: '1m' })
  async call(): Promise<string> {
    this.attempts++;
    throw new Error('down');
  }
}

const open: TestApp[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((app) => app.close()));
});

describe('ResilienceTracingModule without an SDK', () => {
  it('is a no-op', async () => {
    const app = await createApp('express', { imports: [ResilienceModule.forRoot(), ResilienceTracingModule.forRoot()], providers: [Downstream] });
    open.push(app);
    const downstream = app.app.get(Downstream);
    const span = trace.getTracer('no-sdk').startSpan('ignored');
    expect(span.isRecording()).toBe(false);
    await trace.getTracer('no-sdk').startActiveSpan('ignored', async (active) => {
      // The first attempt trips the breaker, the retry is refused by it: the rejection is re-thrown unchanged.
      await expect(downstream.call()).rejects.toBeInstanceOf(CircuitOpenError);
      active.end();
    });
    expect(downstream.attempts).toBe(1);
    expect(trace.getActiveSpan()).toBeUndefined();
  });
});
