import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * The collect-time sources attached to one metric, kept on the metric object itself: every
 * module instance that scrapes into a metric registered on the same registry (tests build many
 * applications) adds its source and removes it on shutdown, so a closed application stops
 * reporting and no state lives outside the registry.
 */
const SOURCES = Symbol.for('nest-resilience.prometheus.sources');

type Source<M> = (metric: M) => void;
type Branded<M> = M & { [SOURCES]: Set<Source<M>> };

/** Default buckets of the call-duration histogram, in seconds (prom-client's defaults). */
export const DEFAULT_DURATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Every metric of the integration, on one registry under one prefix. */
export class ResilienceMetrics {
  /** `<prefix>circuit_breaker_calls_total`: calls through a breaker, by outcome. */
  readonly breakerCalls: Counter<'policy' | 'outcome'>;
  /** `<prefix>circuit_breaker_slow_calls_total`: calls slower than `slowCallDuration`, by outcome. */
  readonly breakerSlowCalls: Counter<'policy' | 'outcome'>;
  /** `<prefix>circuit_breaker_state_transitions_total`: state changes, by from, to and reason. */
  readonly breakerTransitions: Counter<'policy' | 'from' | 'to' | 'reason'>;
  /** `<prefix>circuit_breaker_call_duration_seconds`: duration of the calls a breaker let through. */
  readonly breakerCallDuration: Histogram<'policy' | 'outcome'>;
  /** `<prefix>circuit_breaker_state`: 1 for each breaker's current state, 0 for the others; read at scrape time. */
  readonly breakerState: Branded<Gauge<'policy' | 'state'>>;
  /** `<prefix>circuit_breaker_failure_rate`: the window's failure rate, in percent; read at scrape time. */
  readonly breakerFailureRate: Branded<Gauge<'policy'>>;
  /** `<prefix>circuit_breaker_slow_call_rate`: the window's slow-call rate, in percent; read at scrape time. */
  readonly breakerSlowCallRate: Branded<Gauge<'policy'>>;
  /** `<prefix>rate_limit_decisions_total`: charging decisions, by outcome. */
  readonly rateLimitDecisions: Counter<'policy' | 'outcome'>;
  /** `<prefix>store_fallback_decisions_total`: decisions the store's failure policy made instead of the store. */
  readonly storeFallbacks: Counter<'policy' | 'fallback'>;
  /** `<prefix>store_errors_total`: store failures by kind, read from stores that report them. */
  readonly storeErrors: Branded<Counter<'store' | 'kind'>>;
  /** `<prefix>retry_attempts_total`: failed attempts followed by another one. */
  readonly retryAttempts: Counter<'policy'>;
  /** `<prefix>retry_give_ups_total`: calls a retry stopped on, failing, by reason. */
  readonly retryGiveUps: Counter<'policy' | 'reason'>;
  /** `<prefix>timeouts_total`: calls that reached their deadline. */
  readonly timeouts: Counter<'policy'>;
  /** `<prefix>bulkhead_active`: permits taken; read at scrape time. */
  readonly bulkheadActive: Branded<Gauge<'policy'>>;
  /** `<prefix>bulkhead_queued`: calls waiting for a permit; read at scrape time. */
  readonly bulkheadQueued: Branded<Gauge<'policy'>>;
  /** `<prefix>bulkhead_max_concurrent`: each bulkhead's `maxConcurrent`. */
  readonly bulkheadMaxConcurrent: Branded<Gauge<'policy'>>;
  /** `<prefix>bulkhead_max_queue`: each bulkhead's `maxQueue`. */
  readonly bulkheadMaxQueue: Branded<Gauge<'policy'>>;
  /** `<prefix>bulkhead_rejections_total`: calls a bulkhead refused, by reason. */
  readonly bulkheadRejections: Counter<'policy' | 'reason'>;
  /** `<prefix>fallbacks_total`: failed calls a fallback answered. */
  readonly fallbacks: Counter<'policy'>;
  /** `<prefix>bulkhead_limit`: the concurrency limit in use (an adaptive bulkhead's moves); read at scrape time. */
  readonly bulkheadLimit: Branded<Gauge<'policy'>>;
  /** `<prefix>hedges_total`: extra attempts a hedge started. */
  readonly hedges: Counter<'policy'>;
  /** `<prefix>load_shed_total`: calls shed under overload, by priority. */
  readonly loadShed: Counter<'policy' | 'priority'>;
  /** `<prefix>overload_level`: the load-shedding detector's level (0: none, 3: all but critical shed). */
  readonly overloadLevel: Gauge<never>;
  /** `<prefix>chaos_injections_total`: faults a chaos policy injected, by fault. */
  readonly chaosInjections: Counter<'policy' | 'fault'>;

  /**
   * Registers the metrics on `registry`, or takes the ones an earlier module instance registered
   * there under the same names.
   * @throws Error when a metric of one of our names exists on the registry but was not made by us.
   */
  constructor(
    private readonly registry: Registry,
    prefix: string,
    buckets: readonly number[],
  ) {
    const counter = <L extends string>(name: string, help: string, labelNames: L[]): Counter<L> =>
      this.reuse<Counter<L>>(prefix + name, 'counter') ?? brand(new Counter<L>({ name: prefix + name, help, labelNames, registers: [registry] }));
    const collectedCounter = <L extends string>(name: string, help: string, labelNames: L[]): Branded<Counter<L>> =>
      this.reuse<Counter<L>>(prefix + name, 'counter') ??
      brand(new Counter<L>({ name: prefix + name, help, labelNames, registers: [registry], collect: collectFromSources }));
    const gauge = <L extends string>(name: string, help: string, labelNames: L[]): Branded<Gauge<L>> =>
      this.reuse<Gauge<L>>(prefix + name, 'gauge') ??
      brand(new Gauge<L>({ name: prefix + name, help, labelNames, registers: [registry], collect: collectFromSources }));

    this.breakerCalls = counter('circuit_breaker_calls_total', 'Calls through a circuit breaker, by outcome (success, failure, ignored, rejected, shadow-rejected).', ['policy', 'outcome']);
    this.breakerSlowCalls = counter('circuit_breaker_slow_calls_total', 'Calls through a circuit breaker slower than its slowCallDuration, by outcome (success, failure, ignored).', ['policy', 'outcome']);
    this.breakerTransitions = counter('circuit_breaker_state_transitions_total', 'Circuit breaker state changes, by previous state, new state and reason.', ['policy', 'from', 'to', 'reason']);
    this.breakerCallDuration =
      this.reuse<Histogram<'policy' | 'outcome'>>(`${prefix}circuit_breaker_call_duration_seconds`, 'histogram') ??
      brand(
        new Histogram({
          name: `${prefix}circuit_breaker_call_duration_seconds`,
          help: 'Duration of the calls a circuit breaker let through, in seconds, by outcome (success, failure, ignored).',
          labelNames: ['policy', 'outcome'],
          buckets: [...buckets],
          registers: [registry],
        }),
      );
    this.breakerState = gauge('circuit_breaker_state', 'Current state of a circuit breaker: 1 for its state, 0 for the others (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED).', ['policy', 'state']);
    this.breakerFailureRate = gauge('circuit_breaker_failure_rate', 'Failures per call in the circuit breaker\'s sliding window, in percent.', ['policy']);
    this.breakerSlowCallRate = gauge('circuit_breaker_slow_call_rate', 'Slow calls per call in the circuit breaker\'s sliding window, in percent.', ['policy']);
    this.rateLimitDecisions = counter('rate_limit_decisions_total', 'Rate-limit decisions, by outcome (allowed, rejected, shadow-rejected).', ['policy', 'outcome']);
    this.storeFallbacks = counter('store_fallback_decisions_total', 'Rate-limit decisions the store could not make, decided by its failure policy instead (fail-open, local).', ['policy', 'fallback']);
    this.storeErrors = collectedCounter('store_errors_total', 'Store failures since the store was built, by kind (stores that report them: the Redis store).', ['store', 'kind']);
    this.retryAttempts = counter('retry_attempts_total', 'Failed attempts followed by another attempt (retries scheduled).', ['policy']);
    this.retryGiveUps = counter('retry_give_ups_total', 'Calls a retry policy gave up on, by reason (exhausted, not-retryable, aborted, deadline).', ['policy', 'reason']);
    this.timeouts = counter('timeouts_total', 'Calls that reached their deadline.', ['policy']);
    this.bulkheadActive = gauge('bulkhead_active', 'Calls running in a bulkhead (permits taken).', ['policy']);
    this.bulkheadQueued = gauge('bulkhead_queued', 'Calls waiting in a bulkhead\'s queue.', ['policy']);
    this.bulkheadMaxConcurrent = gauge('bulkhead_max_concurrent', 'A bulkhead\'s maxConcurrent setting.', ['policy']);
    this.bulkheadMaxQueue = gauge('bulkhead_max_queue', 'A bulkhead\'s maxQueue setting.', ['policy']);
    this.bulkheadRejections = counter('bulkhead_rejections_total', 'Calls a bulkhead refused, by reason (full, queue-timeout, displaced, closed).', ['policy', 'reason']);
    this.fallbacks = counter('fallbacks_total', 'Failed calls answered by a fallback.', ['policy']);
    this.bulkheadLimit = gauge('bulkhead_limit', 'The concurrency limit a bulkhead applies now (moves for an adaptive bulkhead; maxConcurrent otherwise).', ['policy']);
    this.hedges = counter('hedges_total', 'Extra attempts started by a hedge because the earlier ones were slow.', ['policy']);
    this.loadShed = counter('load_shed_total', 'Calls refused for their priority while the application was overloaded, by priority.', ['policy', 'priority']);
    this.overloadLevel =
      this.reuse<Gauge<never>>(`${prefix}overload_level`, 'gauge') ??
      brand(new Gauge<never>({ name: `${prefix}overload_level`, help: 'The load-shedding level: 0 none, 1 low shed, 2 normal too, 3 everything below critical.', registers: [registry] }));
    this.chaosInjections = counter('chaos_injections_total', 'Faults injected by a chaos policy, by fault (latency, error, abort).', ['policy', 'fault']);
  }

  /** Adds a source to a collected metric; returns its removal. */
  attach<M>(metric: Branded<M>, source: Source<M>): () => void {
    metric[SOURCES].add(source);
    return () => metric[SOURCES].delete(source);
  }

  private reuse<M>(name: string, type: 'counter' | 'gauge' | 'histogram'): Branded<M> | undefined {
    const existing = this.registry.getSingleMetric(name) as (Counter | Gauge | Histogram) | undefined;
    if (existing === undefined) return undefined;
    const kind = existing instanceof Counter ? 'counter' : existing instanceof Gauge ? 'gauge' : existing instanceof Histogram ? 'histogram' : 'other';
    if (!(SOURCES in existing) || kind !== type) {
      throw new Error(
        `nest-resilience/prometheus: the registry already has a metric named "${name}" that nest-resilience did not register; pass another prefix to ResiliencePrometheusModule.forRoot({ prefix }) or another registry.`,
      );
    }
    return existing as unknown as Branded<M>;
  }
}

function brand<M extends object>(metric: M): Branded<M> {
  return Object.assign(metric, { [SOURCES]: new Set<Source<M>>() }) as Branded<M>;
}

/** prom-client calls it with the metric as `this` before each scrape. */
function collectFromSources(this: { reset(): void }): void {
  this.reset();
  for (const source of (this as Branded<{ reset(): void }>)[SOURCES]) source(this);
}
