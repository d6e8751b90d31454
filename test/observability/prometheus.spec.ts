// Prometheus metrics: names and label values after a scripted sequence of calls, scraped from the
// registry, on Express and Fastify; several applications on one registry; unsubscribing on close.
import { Controller, Get, Injectable, NotFoundException } from '@nestjs/common';
import { Counter, Registry, register } from 'prom-client';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Bulkhead,
  Chaos,
  CircuitBreaker,
  CircuitBreakerRegistry,
  Fallback,
  getAbortSignal,
  Hedge,
  MemoryStore,
  Priority,
  RateLimit,
  ResilienceModule,
  Retry,
  Timeout,
  type ConsumeMode,
  type LimitSpec,
  type RateLimitDecision,
  type PolicyDefinition,
  type ResilienceStore,
} from 'nest-resilience';
import { ResiliencePrometheusCollector, ResiliencePrometheusModule } from '../../lib/prometheus.js';
import { createApp, gate, parseMetrics, PLATFORMS, sample, series, until, type TestApp } from './support/app.js';

/** A store in front of a MemoryStore that can report its decisions as degraded, and failure counters like the Redis store's. */
class DegradingStore implements ResilienceStore {
  readonly kind = 'flaky-redis';
  private readonly inner = new MemoryStore();
  degraded: 'local' | 'fail-open' | undefined;

  consume(key: string, limits: readonly LimitSpec[], cost: number, mode: ConsumeMode, nowMs: number): RateLimitDecision {
    const decision = this.inner.consume(key, limits, cost, mode, nowMs);
    return this.degraded === undefined ? decision : { ...decision, degraded: this.degraded };
  }

  reset(key: string, limits: readonly LimitSpec[]): void {
    this.inner.reset(key, limits);
  }

  stats() {
    return { failures: { timeout: 2, connection: 0 }, permanentErrors: 1, available: true };
  }
}

@Injectable()
class Flaky {
  @Retry({ maxAttempts: 3, delay: 1, jitter: 'none' })
  async fetch(): Promise<string> {
    throw new Error('flaky');
  }
}

const held = { gate: gate(), entered: 0 };

@Controller('m')
class MetricsController {
  constructor(private readonly flaky: Flaky) {}

  @Get('limited')
  @RateLimit({ limit: 2, window: '1m' })
  limited() {
    return 'ok';
  }

  @Get('shadow')
  @RateLimit({ limit: 1, window: '1m', mode: 'shadow' })
  shadow() {
    return 'ok';
  }

  @Get('degraded')
  @RateLimit({ limit: 5, window: '1m' })
  degraded() {
    return 'ok';
  }

  @Get('payments')
  @CircuitBreaker('payments')
  payments(): never {
    throw new Error('payments down');
  }

  @Get('ok')
  @CircuitBreaker({ consecutiveFailures: 5 })
  ok() {
    return 'ok';
  }

  @Get('slow')
  @CircuitBreaker({ consecutiveFailures: 5, slowCallDuration: 5 })
  async slow() {
    await new Promise((resolve) => setTimeout(resolve, 30));
    return 'slow';
  }

  @Get('ignored')
  @CircuitBreaker({ consecutiveFailures: 5, ignore: NotFoundException })
  ignored(): never {
    throw new NotFoundException('nothing here');
  }

  @Get('retry')
  retry() {
    return this.flaky.fetch();
  }

  @Get('timeout')
  @Timeout(20)
  async timeout() {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2_000);
      getAbortSignal()?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    return 'late';
  }

  @Get('fallback')
  @Fallback({ value: 'cached' })
  fallback(): never {
    throw new Error('fallback please');
  }

  @Get('bulkhead')
  @Bulkhead({ maxConcurrent: 1 })
  async bulkhead() {
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

@Controller('light')
class LightController {
  @Get('limited')
  @RateLimit({ limit: 2, window: '1m' })
  limited() {
    return 'ok';
  }

  @Get('ok')
  @CircuitBreaker({ consecutiveFailures: 5 })
  ok() {
    return 'ok';
  }
}

async function metricsApp(platform: (typeof PLATFORMS)[number], registry: Registry | undefined, store: ResilienceStore = new MemoryStore(), extraPolicy?: string) {
  const breaker: PolicyDefinition = { circuitBreaker: { consecutiveFailures: 2, openDuration: '1m' } };
  const app = await createApp(platform, {
    imports: [
      ResilienceModule.forRoot({ store, policies: { payments: breaker, ...(extraPolicy ? { [extraPolicy]: breaker } : {}) } }),
      ResiliencePrometheusModule.forRoot({ ...(registry ? { registry } : {}), path: 'metrics' }),
    ],
    controllers: [MetricsController],
    providers: [Flaky],
  });
  open.push(app);
  return app;
}

async function statuses(app: TestApp, path: string, times: number): Promise<number[]> {
  const result: number[] = [];
  for (let index = 0; index < times; index++) result.push((await request(app.server).get(path)).status);
  return result;
}

describe.each(PLATFORMS)('ResiliencePrometheusModule (%s)', (platform) => {
  it('exposes every metric with stable names and label values after a scripted sequence of calls', async () => {
    const registry = new Registry();
    const store = new DegradingStore();
    const app = await metricsApp(platform, registry, store);

    expect(await statuses(app, '/m/limited', 3)).toEqual([200, 200, 429]);
    expect(await statuses(app, '/m/shadow', 2)).toEqual([200, 200]);
    store.degraded = 'local';
    expect(await statuses(app, '/m/degraded', 1)).toEqual([200]);
    store.degraded = undefined;
    expect(await statuses(app, '/m/payments', 3)).toEqual([500, 500, 503]);
    expect(await statuses(app, '/m/ok', 1)).toEqual([200]);
    expect(await statuses(app, '/m/slow', 1)).toEqual([200]);
    expect(await statuses(app, '/m/ignored', 1)).toEqual([404]);
    expect(await statuses(app, '/m/retry', 1)).toEqual([500]);
    expect(await statuses(app, '/m/timeout', 1)).toEqual([504]);
    const fallback = await request(app.server).get('/m/fallback');
    expect([fallback.status, fallback.text]).toEqual([200, 'cached']);

    // Bulkhead: one call held inside, a second refused; the gauges read the registry at scrape time.
    const first = request(app.server).get('/m/bulkhead').then((response) => response.status);
    await until(() => held.entered === 1);
    expect(await statuses(app, '/m/bulkhead', 1)).toEqual([503]);
    const during = parseMetrics(await registry.metrics());
    expect(sample(during, 'resilience_bulkhead_active', { policy: 'MetricsController.bulkhead' })).toBe(1);
    expect(sample(during, 'resilience_bulkhead_queued', { policy: 'MetricsController.bulkhead' })).toBe(0);
    expect(sample(during, 'resilience_bulkhead_max_concurrent', { policy: 'MetricsController.bulkhead' })).toBe(1);
    expect(sample(during, 'resilience_bulkhead_max_queue', { policy: 'MetricsController.bulkhead' })).toBe(0);
    held.gate.open();
    expect(await first).toBe(200);

    const samples = parseMetrics(await registry.metrics());
    expect(series(samples, 'resilience_rate_limit_decisions_total')).toEqual({
      'resilience_rate_limit_decisions_total{outcome="allowed",policy="MetricsController.limited"}': 2,
      'resilience_rate_limit_decisions_total{outcome="rejected",policy="MetricsController.limited"}': 1,
      'resilience_rate_limit_decisions_total{outcome="allowed",policy="MetricsController.shadow"}': 1,
      'resilience_rate_limit_decisions_total{outcome="shadow-rejected",policy="MetricsController.shadow"}': 1,
      'resilience_rate_limit_decisions_total{outcome="allowed",policy="MetricsController.degraded"}': 1,
    });
    expect(series(samples, 'resilience_store_fallback_decisions_total')).toEqual({
      'resilience_store_fallback_decisions_total{fallback="local",policy="MetricsController.degraded"}': 1,
    });
    expect(series(samples, 'resilience_store_errors_total')).toEqual({
      'resilience_store_errors_total{kind="timeout",store="flaky-redis"}': 2,
      'resilience_store_errors_total{kind="permanent",store="flaky-redis"}': 1,
    });

    expect(series(samples, 'resilience_circuit_breaker_calls_total')).toEqual({
      'resilience_circuit_breaker_calls_total{outcome="failure",policy="payments"}': 2,
      'resilience_circuit_breaker_calls_total{outcome="rejected",policy="payments"}': 1,
      'resilience_circuit_breaker_calls_total{outcome="success",policy="MetricsController.ok"}': 1,
      'resilience_circuit_breaker_calls_total{outcome="success",policy="MetricsController.slow"}': 1,
      'resilience_circuit_breaker_calls_total{outcome="ignored",policy="MetricsController.ignored"}': 1,
    });
    expect(series(samples, 'resilience_circuit_breaker_slow_calls_total')).toEqual({
      'resilience_circuit_breaker_slow_calls_total{outcome="success",policy="MetricsController.slow"}': 1,
    });
    expect(series(samples, 'resilience_circuit_breaker_state_transitions_total')).toEqual({
      'resilience_circuit_breaker_state_transitions_total{from="CLOSED",policy="payments",reason="consecutiveFailures",to="OPEN"}': 1,
    });
    for (const [state, value] of [['CLOSED', 0], ['OPEN', 1], ['HALF_OPEN', 0], ['FORCED_OPEN', 0], ['DISABLED', 0]] as const) {
      expect(sample(samples, 'resilience_circuit_breaker_state', { policy: 'payments', state })).toBe(value);
    }
    expect(sample(samples, 'resilience_circuit_breaker_state', { policy: 'MetricsController.ok', state: 'CLOSED' })).toBe(1);
    expect(sample(samples, 'resilience_circuit_breaker_failure_rate', { policy: 'payments' })).toBe(100);
    expect(sample(samples, 'resilience_circuit_breaker_slow_call_rate', { policy: 'MetricsController.slow' })).toBe(100);
    expect(sample(samples, 'resilience_circuit_breaker_call_duration_seconds_count', { policy: 'payments', outcome: 'failure' })).toBe(2);
    expect(sample(samples, 'resilience_circuit_breaker_call_duration_seconds_bucket', { policy: 'MetricsController.slow', outcome: 'success', le: '0.01' })).toBe(0);
    expect(sample(samples, 'resilience_circuit_breaker_call_duration_seconds_bucket', { policy: 'MetricsController.slow', outcome: 'success', le: '+Inf' })).toBe(1);

    expect(sample(samples, 'resilience_retry_attempts_total', { policy: 'Flaky.fetch' })).toBe(2);
    expect(series(samples, 'resilience_retry_give_ups_total')).toEqual({ 'resilience_retry_give_ups_total{policy="Flaky.fetch",reason="exhausted"}': 1 });
    expect(series(samples, 'resilience_timeouts_total')).toEqual({ 'resilience_timeouts_total{policy="MetricsController.timeout"}': 1 });
    expect(series(samples, 'resilience_fallbacks_total')).toEqual({ 'resilience_fallbacks_total{policy="MetricsController.fallback"}': 1 });
    expect(series(samples, 'resilience_bulkhead_rejections_total')).toEqual({ 'resilience_bulkhead_rejections_total{policy="MetricsController.bulkhead",reason="full"}': 1 });
    expect(sample(samples, 'resilience_bulkhead_active', { policy: 'MetricsController.bulkhead' })).toBe(0);

    // The optional controller serves the same registry in the Prometheus text format.
    const scraped = await request(app.server).get('/metrics');
    expect(scraped.status).toBe(200);
    // Nest 11 on Express puts the charset before the version: the order of parameters is free.
    const contentType = String(scraped.headers['content-type']);
    expect(contentType.split(';')[0]).toBe('text/plain');
    expect(contentType).toMatch(/;\s*version=0\.0\.4(;|$)/);
    expect(parseMetrics(scraped.text).get('resilience_circuit_breaker_state{policy="payments",state="OPEN"}')).toBe(1);
  });
});

@Controller('a')
class AdvancedController {
  hedged = 0;

  @Get('shed')
  @Priority('low')
  shed() {
    return 'ok';
  }

  @Get('chaos')
  @Chaos({ error: { rate: 1 } })
  chaos() {
    return 'ok';
  }

  @Get('adaptive')
  @Bulkhead({ adaptive: { algorithm: 'aimd', initialLimit: 7, maxLimit: 50 } })
  adaptive() {
    return 'ok';
  }

  /** The first attempt of each call is slow: the hedge answers. */
  @Get('hedge')
  @Hedge({ delay: 5 })
  async hedge() {
    if (this.hedged++ % 2 === 0) await new Promise((resolve) => setTimeout(resolve, 200, undefined));
    return 'ok';
  }
}

describe.each(PLATFORMS)('ResiliencePrometheusModule, policies beyond the six (%s)', (platform) => {
  it('counts hedges, shed calls and injected faults, and reads the adaptive limit and the overload level', async () => {
    const registry = new Registry();
    const app = await createApp(platform, {
      imports: [
        // An overloaded application: the delay source reads far above the threshold.
        ResilienceModule.forRoot({ loadShedding: { eventLoopDelay: '10ms', sampleInterval: '5ms', delaySource: () => 1000 } }),
        ResiliencePrometheusModule.forRoot({ registry }),
      ],
      controllers: [AdvancedController],
    });
    open.push(app);
    for (let shed = 0; shed < 100 && (await request(app.server).get('/a/shed')).status !== 503; shed++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await statuses(app, '/a/chaos', 2)).toEqual([500, 500]);
    expect(await statuses(app, '/a/adaptive', 1)).toEqual([200]);
    expect(await statuses(app, '/a/hedge', 1)).toEqual([200]);

    const samples = parseMetrics(await registry.metrics());
    expect(sample(samples, 'resilience_load_shed_total', { policy: 'AdvancedController.shed', priority: '0' })).toBe(1);
    expect(sample(samples, 'resilience_overload_level', {})).toBe(3);
    expect(series(samples, 'resilience_chaos_injections_total')).toEqual({ 'resilience_chaos_injections_total{fault="error",policy="AdvancedController.chaos"}': 2 });
    expect(sample(samples, 'resilience_bulkhead_limit', { policy: 'AdvancedController.adaptive' })).toBe(7);
    expect(series(samples, 'resilience_hedges_total')).toEqual({ 'resilience_hedges_total{policy="AdvancedController.hedge"}': 1 });
  });
});

describe('ResiliencePrometheusModule on a shared registry', () => {
  it('builds many applications on one registry without a duplicate-registration error; a closed one stops reporting', async () => {
    const registry = new Registry();
    const alpha = await metricsApp('express', registry, undefined, 'alpha');
    const beta = await metricsApp('express', registry, undefined, 'beta');
    await request(alpha.server).get('/m/limited');
    await request(beta.server).get('/m/limited');
    let samples = parseMetrics(await registry.metrics());
    // Counters add up across the applications; gauges report each application's breakers.
    expect(sample(samples, 'resilience_rate_limit_decisions_total', { policy: 'MetricsController.limited', outcome: 'allowed' })).toBe(2);
    expect(sample(samples, 'resilience_circuit_breaker_state', { policy: 'alpha', state: 'CLOSED' })).toBe(1);
    expect(sample(samples, 'resilience_circuit_breaker_state', { policy: 'beta', state: 'CLOSED' })).toBe(1);

    const alphaBreakers = alpha.app.get(CircuitBreakerRegistry);
    await alpha.close();
    // Unsubscribed on close: the closed application's breaker still works but reports nothing.
    await alphaBreakers.get('alpha').execute(async () => 'still works');
    samples = parseMetrics(await registry.metrics());
    expect(sample(samples, 'resilience_circuit_breaker_state', { policy: 'alpha', state: 'CLOSED' })).toBeUndefined();
    expect(sample(samples, 'resilience_circuit_breaker_calls_total', { policy: 'alpha', outcome: 'success' })).toBeUndefined();
    expect(sample(samples, 'resilience_circuit_breaker_state', { policy: 'beta', state: 'CLOSED' })).toBe(1);
  });

  it('registers on prom-client\'s default registry when given none, twice without error', async () => {
    try {
      const first = await metricsApp('express', undefined);
      const second = await metricsApp('express', undefined);
      expect(first.app.get(ResiliencePrometheusCollector).registry).toBe(register);
      expect(second.app.get(ResiliencePrometheusCollector).registry).toBe(register);
      await request(second.server).get('/m/limited');
      expect(parseMetrics(await register.metrics()).get('resilience_rate_limit_decisions_total{outcome="allowed",policy="MetricsController.limited"}')).toBe(1);
    } finally {
      register.clear();
    }
  });

  it('honours a prefix, and refuses a registry where a metric of the same name is not ours', async () => {
    const registry = new Registry();
    const app = await createApp('express', {
      imports: [ResilienceModule.forRoot(), ResiliencePrometheusModule.forRoot({ registry, prefix: 'api_' })],
      controllers: [LightController],
    });
    open.push(app);
    await request(app.server).get('/light/limited');
    expect(parseMetrics(await registry.metrics()).get('api_rate_limit_decisions_total{outcome="allowed",policy="LightController.limited"}')).toBe(1);

    const foreign = new Registry();
    const theirs = new Counter({ name: 'resilience_timeouts_total', help: 'someone else', registers: [foreign] });
    expect(foreign.getSingleMetric('resilience_timeouts_total')).toBe(theirs);
    await expect(
      createApp('express', { imports: [ResilienceModule.forRoot(), ResiliencePrometheusModule.forRoot({ registry: foreign })], controllers: [] }),
    ).rejects.toThrow(/already has a metric named "resilience_timeouts_total" that nest-resilience did not register/);
  });

  it('takes its registry from a factory with forRootAsync', async () => {
    const registry = new Registry();
    const app = await createApp('express', {
      imports: [ResilienceModule.forRoot(), ResiliencePrometheusModule.forRootAsync({ useFactory: () => ({ registry }) })],
      controllers: [LightController],
    });
    open.push(app);
    await request(app.server).get('/light/ok');
    expect(parseMetrics(await registry.metrics()).get('resilience_circuit_breaker_calls_total{outcome="success",policy="LightController.ok"}')).toBe(1);
  });

  it('says how to fix a missing ResilienceModule', async () => {
    await expect(createApp('express', { imports: [ResiliencePrometheusModule.forRoot({ registry: new Registry() })] })).rejects.toThrow(
      /ResiliencePrometheusModule needs ResilienceModule: import ResilienceModule\.forRoot\(\)/,
    );
  });
});
