import { Injectable } from '@nestjs/common';
import { EventSource, type Disposable, type Event } from '../core/events.js';
import type { BulkheadInstance, BulkheadLimitChangeEvent, BulkheadQueueEvent, BulkheadRejectEvent } from '../policies/bulkhead/index.js';
import type { ChaosInjectEvent, ChaosPolicy } from '../policies/chaos/index.js';
import type { CircuitBreakerInstance, CircuitCallEvent, CircuitStateChangeEvent } from '../policies/circuit-breaker/index.js';
import type { FallbackEvent, FallbackPolicy } from '../policies/fallback/index.js';
import type { HedgeEvent, HedgePolicy } from '../policies/hedge/index.js';
import type { LoadShedEvent, LoadSheddingPolicy, OverloadChangeEvent, OverloadDetector } from '../policies/load-shedding/index.js';
import type { RateLimitDecisionEvent, RateLimitPolicy } from '../policies/rate-limit/index.js';
import type { RetryEvent, RetryGiveUpEvent, RetryPolicy } from '../policies/retry/index.js';
import type { TimeoutEvent, TimeoutPolicy } from '../policies/timeout/index.js';

/** An engine event with the name of the handler or policy it belongs to (`Class.method` or a policy name). */
export type Labelled<T> = T & { readonly policy: string };

type Source<T> = (listener: (event: T) => void) => Disposable;

/**
 * One stream of events gathered from every engine of a kind. It subscribes to the engines only
 * while it has listeners of its own: an engine with no listener builds no event object, so an
 * application that observes nothing pays nothing per call. Sources are kept by key (the handler or
 * policy they belong to): the engine that replaces another after a run-time update takes its
 * place, so updates do not pile up subscriptions nor keep replaced engines alive.
 */
class Relay<T> {
  private readonly target = new EventSource<T>();
  private readonly sources = new Map<unknown, Source<T>>();
  private readonly subscriptions = new Map<unknown, Disposable>();
  private listeners = 0;

  readonly event: Event<T> = (listener) => {
    const subscription = this.target.event(listener);
    if (this.listeners++ === 0) for (const [key, source] of this.sources) this.subscriptions.set(key, source(this.forward));
    return {
      dispose: () => {
        subscription.dispose();
        if (--this.listeners > 0) return;
        for (const active of this.subscriptions.values()) active.dispose();
        this.subscriptions.clear();
      },
    };
  };

  private readonly forward = (event: T): void => this.target.emit(event);

  add(source: Source<T>, key: unknown = source): void {
    this.subscriptions.get(key)?.dispose();
    this.subscriptions.delete(key);
    this.sources.set(key, source);
    if (this.listeners > 0) this.subscriptions.set(key, source(this.forward));
  }
}

/**
 * Every event of every policy the module built, as one set of streams: what metrics, health
 * checks, tracing and logging subscribe to.
 *
 * @example
 * events.onCircuitStateChange(({ breaker, from, to }) => logger.warn(`${breaker}: ${from} → ${to}`));
 */
@Injectable()
export class ResilienceEvents {
  private readonly stateChanges = new Relay<CircuitStateChangeEvent>();
  private readonly calls = new Relay<CircuitCallEvent>();
  private readonly decisions = new Relay<RateLimitDecisionEvent>();
  private readonly retries = new Relay<Labelled<RetryEvent>>();
  private readonly giveUps = new Relay<Labelled<RetryGiveUpEvent>>();
  private readonly timeouts = new Relay<Labelled<TimeoutEvent>>();
  private readonly bulkheadRejects = new Relay<BulkheadRejectEvent>();
  private readonly bulkheadQueues = new Relay<BulkheadQueueEvent>();
  private readonly fallbacks = new Relay<Labelled<FallbackEvent>>();
  private readonly limitChanges = new Relay<BulkheadLimitChangeEvent>();
  private readonly hedges = new Relay<Labelled<HedgeEvent>>();
  private readonly sheds = new Relay<Labelled<LoadShedEvent>>();
  private readonly overloads = new Relay<OverloadChangeEvent>();
  private readonly injections = new Relay<ChaosInjectEvent>();

  /** A breaker changed state. */
  readonly onCircuitStateChange = this.stateChanges.event;
  /** A call went through a breaker: success, failure, ignored or rejected, and whether it was slow. */
  readonly onCircuitCall = this.calls.event;
  /** A rate-limit decision (admitted or refused; `shadow` when a refusal was let through). */
  readonly onRateLimitDecision = this.decisions.event;
  /** An attempt failed and another follows after `delayMs`. */
  readonly onRetry = this.retries.event;
  /** A retry gave up (attempts used up, not retryable, aborted, or no time left). */
  readonly onRetryGiveUp = this.giveUps.event;
  /** A call reached its deadline. */
  readonly onTimeout = this.timeouts.event;
  /** A bulkhead refused a call (full, queue timeout, closed). */
  readonly onBulkheadReject = this.bulkheadRejects.event;
  /** A call waits in a bulkhead's queue. */
  readonly onBulkheadQueue = this.bulkheadQueues.event;
  /** A fallback answered in place of an error. */
  readonly onFallback = this.fallbacks.event;
  /** An adaptive bulkhead moved its concurrency limit. */
  readonly onBulkheadLimitChange = this.limitChanges.event;
  /** A hedged call started another attempt. */
  readonly onHedge = this.hedges.event;
  /** A call was shed for its priority while the application was overloaded. */
  readonly onLoadShed = this.sheds.event;
  /** The overload level (`loadShedding`) changed. */
  readonly onOverloadChange = this.overloads.event;
  /** A chaos policy injected a fault. */
  readonly onChaosInject = this.injections.event;

  /** Adds a breaker's events. Internal: the module calls it for every breaker it builds. */
  trackCircuitBreaker(breaker: CircuitBreakerInstance): void {
    this.stateChanges.add(breaker.onStateChange, breaker.name);
    this.calls.add(breaker.onCall, breaker.name);
  }

  /** Adds a rate limiter's decisions. Internal. */
  trackRateLimiter(limiter: RateLimitPolicy): void {
    this.decisions.add(limiter.onDecision);
  }

  /** Adds a retry's events under `policy`. Internal. */
  trackRetry(policy: string, retry: RetryPolicy): void {
    this.retries.add((listener) => retry.onRetry((event) => listener({ ...event, policy })), policy);
    this.giveUps.add((listener) => retry.onGiveUp((event) => listener({ ...event, policy })), policy);
  }

  /** Adds a timeout's events under `policy`. Internal. */
  trackTimeout(policy: string, timeout: TimeoutPolicy): void {
    this.timeouts.add((listener) => timeout.onTimeout((event) => listener({ ...event, policy })), policy);
  }

  /** Adds a bulkhead's events. Internal. */
  trackBulkhead(bulkhead: BulkheadInstance): void {
    this.bulkheadRejects.add(bulkhead.onReject, bulkhead.name);
    this.bulkheadQueues.add(bulkhead.onQueue, bulkhead.name);
    if ('onLimitChange' in bulkhead) this.limitChanges.add((bulkhead as { onLimitChange: Event<BulkheadLimitChangeEvent> }).onLimitChange, bulkhead.name);
  }

  /** Adds a hedge's events under `policy`. Internal. */
  trackHedge(policy: string, hedge: HedgePolicy): void {
    this.hedges.add((listener) => hedge.onHedge((event) => listener({ ...event, policy })), policy);
  }

  /** Adds a priority policy's sheds under `policy`. Internal. */
  trackLoadShedding(policy: string, shedding: LoadSheddingPolicy): void {
    this.sheds.add((listener) => shedding.onShed((event) => listener({ ...event, policy })), policy);
  }

  /** Adds the overload detector's level changes. Internal. */
  trackOverload(detector: OverloadDetector): void {
    this.overloads.add(detector.onOverload);
  }

  /** Adds a chaos policy's injections. Internal. */
  trackChaos(chaos: ChaosPolicy): void {
    this.injections.add(chaos.onInject, chaos.name);
  }

  /** Adds a fallback's events under `policy`. Internal. */
  trackFallback(policy: string, fallback: FallbackPolicy): void {
    this.fallbacks.add((listener) => fallback.onFallback((event) => listener({ ...event, policy })), policy);
  }
}
