import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { register, type Registry } from 'prom-client';
import type { Disposable } from '../../core/events.js';
import type { CircuitState } from '../../policies/circuit-breaker/circuit-breaker.options.js';
import { resolveResilience } from '../shared/resilience-refs.js';
import { DEFAULT_DURATION_BUCKETS, ResilienceMetrics } from './prometheus.metrics.js';
import type { ResiliencePrometheusOptions } from './prometheus.options.js';

/** Token of the options of `ResiliencePrometheusModule`. */
export const RESILIENCE_PROMETHEUS_OPTIONS = Symbol('nest-resilience:prometheus-options');

const STATES: readonly CircuitState[] = ['CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED'];

/** What a store that reports its failures (the Redis store) returns from `stats()`. */
interface StoreFailureStats {
  failures: Record<string, number>;
  permanentErrors?: number;
}

/**
 * Feeds the policies' events into Prometheus metrics, and reads breaker and bulkhead state from
 * the registries at scrape time. Subscribes when the application starts, unsubscribes when it
 * shuts down. Provided by `ResiliencePrometheusModule`.
 */
@Injectable()
export class ResiliencePrometheusCollector implements OnModuleInit, OnModuleDestroy {
  /** The registry the metrics are on. */
  readonly registry: Registry;
  private readonly prefix: string;
  private readonly buckets: readonly number[];
  private readonly subscriptions: Disposable[] = [];
  private readonly detachers: Array<() => void> = [];
  private metricSet: ResilienceMetrics | undefined;

  /**
   * Built by Nest's injector from the module's options.
   * @throws Error when `prefix` is not a valid start of a Prometheus metric name.
   */
  constructor(
    @Inject(RESILIENCE_PROMETHEUS_OPTIONS) options: ResiliencePrometheusOptions,
    private readonly moduleRef: ModuleRef,
  ) {
    this.registry = options.registry ?? register;
    this.prefix = options.prefix ?? 'resilience_';
    this.buckets = options.buckets ?? DEFAULT_DURATION_BUCKETS;
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(`${this.prefix}x`)) {
      throw new Error(`ResiliencePrometheusModule: invalid prefix "${this.prefix}": letters, digits, "_" and ":", not starting with a digit`);
    }
  }

  /** The metrics (available once the application has started). */
  get metrics(): ResilienceMetrics {
    if (this.metricSet === undefined) throw new Error('ResiliencePrometheusCollector: the metrics are registered when the application starts (onModuleInit)');
    return this.metricSet;
  }

  /** The registry's metrics in the Prometheus text format (what `GET /metrics` answers). */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * Registers the metrics (or reuses those another application registered on the same registry)
   * and subscribes to the policies' events, when the application starts.
   * @throws Error when the registry holds a metric of one of our names that we did not register.
   */
  onModuleInit(): void {
    const { events, breakers, bulkheads, store } = resolveResilience(this.moduleRef, 'ResiliencePrometheusModule');
    const metrics = (this.metricSet = new ResilienceMetrics(this.registry, this.prefix, this.buckets));

    this.subscriptions.push(
      events.onCircuitCall(({ breaker, outcome, slow, durationMs, shadow }) => {
        const label = outcome === 'rejected' && shadow === true ? 'shadow-rejected' : outcome;
        metrics.breakerCalls.inc({ policy: breaker, outcome: label });
        if (outcome === 'rejected') return;
        if (slow) metrics.breakerSlowCalls.inc({ policy: breaker, outcome });
        metrics.breakerCallDuration.observe({ policy: breaker, outcome }, durationMs / 1000);
      }),
      events.onCircuitStateChange(({ breaker, from, to, reason }) => metrics.breakerTransitions.inc({ policy: breaker, from, to, reason })),
      events.onRateLimitDecision(({ limiter, decision, shadow, mode }) => {
        if (mode !== 'consume') return;
        metrics.rateLimitDecisions.inc({ policy: limiter, outcome: decision.allowed ? 'allowed' : shadow ? 'shadow-rejected' : 'rejected' });
        if (decision.degraded !== undefined) metrics.storeFallbacks.inc({ policy: limiter, fallback: decision.degraded });
      }),
      events.onRetry(({ policy }) => metrics.retryAttempts.inc({ policy })),
      events.onRetryGiveUp(({ policy, reason }) => metrics.retryGiveUps.inc({ policy, reason })),
      events.onTimeout(({ policy }) => metrics.timeouts.inc({ policy })),
      events.onBulkheadReject(({ bulkhead, reason }) => metrics.bulkheadRejections.inc({ policy: bulkhead, reason })),
      events.onFallback(({ policy }) => metrics.fallbacks.inc({ policy })),
      events.onHedge(({ policy }) => metrics.hedges.inc({ policy })),
      events.onLoadShed(({ policy, priority }) => metrics.loadShed.inc({ policy, priority: String(priority) })),
      events.onOverloadChange(({ level }) => metrics.overloadLevel.set(level)),
      events.onChaosInject(({ policy, fault }) => metrics.chaosInjections.inc({ policy, fault })),
    );

    const breakerList = () => breakers.list();
    const bulkheadList = () => bulkheads.list();
    this.detachers.push(
      metrics.attach(metrics.breakerState, (gauge) => {
        for (const breaker of breakerList()) for (const state of STATES) gauge.set({ policy: breaker.name, state }, breaker.state === state ? 1 : 0);
      }),
      metrics.attach(metrics.breakerFailureRate, (gauge) => {
        for (const breaker of breakerList()) gauge.set({ policy: breaker.name }, breaker.failureRate);
      }),
      metrics.attach(metrics.breakerSlowCallRate, (gauge) => {
        for (const breaker of breakerList()) gauge.set({ policy: breaker.name }, breaker.slowCallRate);
      }),
      metrics.attach(metrics.bulkheadActive, (gauge) => {
        for (const bulkhead of bulkheadList()) gauge.set({ policy: bulkhead.name }, bulkhead.active);
      }),
      metrics.attach(metrics.bulkheadQueued, (gauge) => {
        for (const bulkhead of bulkheadList()) gauge.set({ policy: bulkhead.name }, bulkhead.queued);
      }),
      metrics.attach(metrics.bulkheadMaxConcurrent, (gauge) => {
        for (const name of bulkheads.names()) {
          const limit = bulkheadLimits(bulkheads.get(name)).maxConcurrent;
          if (limit !== undefined) gauge.set({ policy: name }, limit);
        }
      }),
      metrics.attach(metrics.bulkheadLimit, (gauge) => {
        for (const name of bulkheads.names()) {
          const bulkhead = bulkheads.get(name) as { limit?: unknown };
          const limit = typeof bulkhead.limit === 'number' ? bulkhead.limit : bulkheadLimits(bulkhead).maxConcurrent;
          if (limit !== undefined) gauge.set({ policy: name }, limit);
        }
      }),
      metrics.attach(metrics.bulkheadMaxQueue, (gauge) => {
        for (const name of bulkheads.names()) {
          const limit = bulkheadLimits(bulkheads.get(name)).maxQueue;
          if (limit !== undefined) gauge.set({ policy: name }, limit);
        }
      }),
      metrics.attach(metrics.storeErrors, (counter) => {
        const stats = storeFailureStats(store);
        if (stats === undefined) return;
        for (const [kind, count] of Object.entries(stats.failures)) if (count > 0) counter.inc({ store: store.kind, kind }, count);
        if ((stats.permanentErrors ?? 0) > 0) counter.inc({ store: store.kind, kind: 'permanent' }, stats.permanentErrors);
      }),
    );
  }

  /** Unsubscribes and stops reporting this application's gauges, when it shuts down. */
  onModuleDestroy(): void {
    for (const subscription of this.subscriptions.splice(0)) subscription.dispose();
    for (const detach of this.detachers.splice(0)) detach();
  }
}

/** A bulkhead's settings, when it exposes them (`BulkheadPolicy.options`, the distributed bulkhead's). */
function bulkheadLimits(bulkhead: object): { maxConcurrent?: number; maxQueue?: number } {
  const options = (bulkhead as { options?: { maxConcurrent?: unknown; maxQueue?: unknown } }).options;
  return {
    maxConcurrent: typeof options?.maxConcurrent === 'number' ? options.maxConcurrent : undefined,
    maxQueue: typeof options?.maxQueue === 'number' ? options.maxQueue : undefined,
  };
}

/** The failure counters of a store that has them; `undefined` for the memory store. */
function storeFailureStats(store: object): StoreFailureStats | undefined {
  const stats = (store as { stats?: () => unknown }).stats;
  if (typeof stats !== 'function') return undefined;
  const value = stats.call(store) as Partial<StoreFailureStats> | undefined;
  if (typeof value !== 'object' || value === null || typeof value.failures !== 'object' || value.failures === null) return undefined;
  return value as StoreFailureStats;
}
