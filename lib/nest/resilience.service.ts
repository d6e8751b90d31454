import { Inject, Injectable, Logger, Optional, type BeforeApplicationShutdown, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { systemClock, type Clock } from '../core/clock.js';
import { CallContext, currentContext } from '../core/context.js';
import type { Duration } from '../core/duration.js';
import { InvalidOptionError, OperationAbortedError } from '../core/errors.js';
import { Pipeline, resolveOrder, type PipelinePolicies, type PolicyKind } from '../core/pipeline.js';
import { AdaptiveBulkheadPolicy } from '../policies/bulkhead/adaptive-bulkhead.policy.js';
import type { BulkheadInstance } from '../policies/bulkhead/bulkhead.instance.js';
import { BulkheadPolicy } from '../policies/bulkhead/bulkhead.policy.js';
import { ChaosPolicy } from '../policies/chaos/chaos.policy.js';
import type { CircuitBreakerInstance } from '../policies/circuit-breaker/circuit-breaker.instance.js';
import { CircuitBreakerPolicy } from '../policies/circuit-breaker/circuit-breaker.policy.js';
import { FallbackPolicy } from '../policies/fallback/fallback.policy.js';
import { HedgePolicy } from '../policies/hedge/hedge.policy.js';
import { LoadSheddingPolicy } from '../policies/load-shedding/load-shedding.policy.js';
import { OverloadDetector } from '../policies/load-shedding/overload.js';
import { RetryBudget, type RetryBudgetInstance, type RetryBudgetOptions } from '../policies/retry/retry-budget.js';
import { RetryPolicy } from '../policies/retry/retry.policy.js';
import { TimeoutPolicy } from '../policies/timeout/timeout.policy.js';
import type { TimeoutOptions } from '../policies/timeout/timeout.options.js';
import type { RateLimitPolicy } from '../policies/rate-limit/rate-limit.policy.js';
import { MemoryStore } from '../stores/memory/memory.store.js';
import type { ResilienceStore } from '../stores/store.interface.js';
import type { PatternSpec } from './decorators/decorator-metadata.js';
import { HandlerLimiter, resolveLimits, type LimitScope } from './enhancers/handler-limiter.js';
import { readMethodMetadata, type MethodMetadata, type RecordedPatterns } from './metadata.accessor.js';
import { GLOBAL_RATE_LIMIT } from './resilience.constants.js';
import { RESILIENCE_MODULE_OPTIONS } from './resilience.module-definition.js';
import type { TransportExceptions } from './errors/error-mapping.js';
import type {
  BulkheadSettings,
  ChaosSettings,
  CircuitBreakerSettings,
  FallbackSettings,
  HedgeSettings,
  PolicyDefinition,
  PrioritySettings,
  RateLimitSettings,
  ResilienceModuleOptions,
  RetryBudgetSettings,
  RetrySettings,
} from './resilience.options.js';
import { BulkheadRegistry } from './registries/bulkhead.registry.js';
import { ChaosRegistry } from './registries/chaos.registry.js';
import { resolveDeadlinePropagationOptions } from './deadline/deadline.options.js';
import { CircuitBreakerRegistry } from './registries/circuit-breaker.registry.js';
import { RateLimiterRegistry } from './registries/rate-limiter.registry.js';
import { ResilienceEvents } from './resilience.events.js';


/** Where a handler lives: an HTTP/RPC/WS controller (guard + interceptor) or a provider (wrapper). */
export type HandlerKind = 'controller' | 'provider';

/** Everything a handler needs per call, built once. */
export interface HandlerPlan {
  /** `Class.method`. */
  readonly label: string;
  /** The policies around the handler (the rate limit too, for providers). */
  readonly pipeline: Pipeline | undefined;
  /** The same without hedging (and without retry unless it allows them), for non-idempotent HTTP requests. */
  readonly pipelineWithoutRetry: Pipeline | undefined;
  /** The rate limits a controller's guard enforces. */
  readonly limiter: HandlerLimiter | undefined;
  readonly skipRateLimit: boolean;
  /** Named policies the plan was built from; an update to one of them rebuilds the plan. */
  readonly policyNames: ReadonlySet<string>;
  /** Patterns the handler takes from a policy it names in a decorator: an update may not drop them. */
  readonly requires: ReadonlyArray<readonly [policy: string, kind: keyof PolicyDefinition, decorator: string]>;
  stale: boolean;
}

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/**
 * Resolves decorators, named policies and defaults into one {@link HandlerPlan} per handler,
 * validated at bootstrap and cached; owns the store and the shared named instances. Internal.
 */
@Injectable()
export class ResilienceService implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  readonly clock: Clock;
  readonly store: ResilienceStore;
  readonly order: readonly PolicyKind[];
  private readonly policies = new Map<string, PolicyDefinition>();
  /**
   * Plans by handler, then by class: a handler inherited from a base class is shared by every
   * subclass, whose class-level decorators may differ.
   */
  private readonly plans = new Map<Function, Map<Function, HandlerPlan>>();
  /** Plans not yet stale, whoever holds them (a provider wrapper keeps its own). */
  private readonly livePlans = new Set<HandlerPlan>();
  private readonly inlineInstances = new Map<string, { options: object; instance: CircuitBreakerInstance | BulkheadInstance | ChaosPolicy }>();
  private readonly sources = new Map<Function, Map<Function, { methodName: string; kind: HandlerKind; instance?: object }>>();
  private globalLimiter: HandlerLimiter | undefined;
  /** Exception classes of the optional transports, filled in at bootstrap when installed. */
  readonly transports: TransportExceptions = {};
  /**
   * The parent of every call that has no enclosing one: aborted when the application shuts
   * down, so retry sleeps, timeouts and queued calls settle at once instead of holding the
   * HTTP server (and the process) open.
   */
  private readonly lifetime = new CallContext();
  /** Bulkheads replaced by a run-time update, still closed at shutdown (calls may wait in them). */
  /** Breakers and bulkheads replaced by an update: calls may still hold them; closed at shutdown. */
  private readonly retired = new Set<CircuitBreakerInstance | BulkheadInstance>();
  /** The module's named retry budgets, shared by every retry and hedge naming one. */
  private readonly retryBudgets = new Map<string, RetryBudgetInstance>();
  /** The module's overload detector (`loadShedding`), shared by every `@Priority`. */
  readonly overload: OverloadDetector | undefined;

  constructor(
    @Inject(RESILIENCE_MODULE_OPTIONS) readonly options: ResilienceModuleOptions,
    readonly breakers: CircuitBreakerRegistry,
    readonly bulkheads: BulkheadRegistry,
    readonly limiters: RateLimiterRegistry,
    readonly events: ResilienceEvents,
    readonly chaos: ChaosRegistry,
    @Optional() @Inject(GLOBAL_RATE_LIMIT) private readonly globalRateLimit?: string | RateLimitSettings,
  ) {
    this.clock = options.clock ?? systemClock;
    this.store = options.store ?? new MemoryStore();
    this.order = wrapInvalid(() => resolveOrder(options.order, 'order'), 'ResilienceModule.forRoot');
    for (const [name, settings] of Object.entries(options.retryBudgets ?? {})) {
      this.retryBudgets.set(name, wrapInvalid(() => this.buildRetryBudget(name, settings), 'ResilienceModule.forRoot', `retryBudgets.${name}`));
    }
    // Checked here too: the middleware that reads it is built only when the application has routes.
    if (options.deadline !== undefined) wrapInvalid(() => resolveDeadlinePropagationOptions(options.deadline!), 'ResilienceModule.forRoot', 'deadline');
    if (options.loadShedding !== undefined) {
      this.overload = wrapInvalid(() => new OverloadDetector(options.loadShedding, { clock: this.clock }), 'ResilienceModule.forRoot', 'loadShedding');
      this.events.trackOverload(this.overload);
    }
    for (const [name, definition] of Object.entries(options.policies ?? {})) {
      this.definePolicy(name, definition, `ResilienceModule.forRoot: policy "${name}"`);
    }
  }

  private readonly trackLimiter = (engine: RateLimitPolicy): void => this.events.trackRateLimiter(engine);

  /** The named policies as configured (after run-time updates). */
  policyDefinitions(): ReadonlyMap<string, PolicyDefinition> {
    return this.policies;
  }

  /**
   * Validates a named policy and (re)builds its shared instances (the breaker, the bulkhead, the
   * chaos policy) whose settings changed; an unchanged one keeps its state (an open circuit stays
   * open, a chaos policy switched off stays off). Refuses a definition that drops a pattern a
   * handler names the policy for (`@CircuitBreaker('name')`). Nothing changes when validation
   * fails, nor with `validateOnly` (a dry run: only the checks).
   */
  definePolicy(name: string, definition: PolicyDefinition, where: string, { validateOnly = false } = {}): void {
    if (typeof definition !== 'object' || definition === null) throw new InvalidOptionError(`policies.${name}`, definition, 'an object of pattern settings', where);
    const known = ['circuitBreaker', 'rateLimit', 'retry', 'timeout', 'bulkhead', 'fallback', 'hedge', 'chaos'];
    for (const key of Object.keys(definition)) {
      if (!known.includes(key)) throw new InvalidOptionError(`policies.${name}.${key}`, (definition as Record<string, unknown>)[key], `one of ${known.join(', ')}`, where);
    }
    const defaults = this.options.defaults ?? {};
    const previous = this.policies.get(name);
    this.checkRequiredPatterns(name, definition, where);
    // A section that did not change keeps its instance, and so its state.
    const changed = (kind: 'circuitBreaker' | 'bulkhead' | 'chaos') => previous === undefined || !sameValue(previous[kind], definition[kind]);
    const breaker = definition.circuitBreaker && changed('circuitBreaker')
      ? wrapInvalid(() => this.buildBreaker({ ...defaults.circuitBreaker, ...definition.circuitBreaker, name }), where, 'circuitBreaker')
      : undefined;
    const bulkhead = definition.bulkhead && changed('bulkhead') ? wrapInvalid(() => this.buildBulkhead({ ...defaults.bulkhead, ...definition.bulkhead, name }), where, 'bulkhead') : undefined;
    if (definition.retry) wrapInvalid(() => this.buildRetry(definition.retry!), where, 'retry');
    if (definition.timeout !== undefined) wrapInvalid(() => this.buildTimeout(definition.timeout!), where, 'timeout');
    if (definition.hedge !== undefined) wrapInvalid(() => this.buildHedge(definition.hedge!), where, 'hedge');
    const chaos = definition.chaos !== undefined && changed('chaos') ? wrapInvalid(() => this.buildChaos(definition.chaos!, name), where, 'chaos') : undefined;
    if (definition.rateLimit !== undefined) {
      const list = Array.isArray(definition.rateLimit) ? definition.rateLimit : [definition.rateLimit];
      wrapInvalid(() => resolveLimits(list.map((settings) => ({ settings: { ...defaults.rateLimit, ...settings }, policy: name })), { handlerId: name, clock: this.clock, store: this.store }), where, 'rateLimit');
    }
    if (definition.fallback !== undefined && typeof definition.fallback !== 'string') {
      wrapInvalid(() => this.buildFallback(definition.fallback!, undefined, 'named'), where, 'fallback');
    }
    if (validateOnly) {
      // Fleet-wide instances start background work when built: a dry run must not leave it running.
      void breaker?.close?.();
      void bulkhead?.close();
      return;
    }
    this.policies.set(name, definition);
    if (breaker) {
      const replaced = this.breakers.has(name) ? this.breakers.get(name) : undefined;
      if (replaced !== undefined) this.retired.add(replaced);
      this.breakers.register(name, breaker);
      this.events.trackCircuitBreaker(breaker);
    }
    if (chaos) {
      // New faults, same switch: a policy switched off at run time stays off unless `enabled` says otherwise.
      const replaced = this.chaos.has(name) ? this.chaos.get(name) : undefined;
      if (replaced !== undefined && !replaced.enabled && definition.chaos?.enabled === undefined) chaos.disable();
      this.chaos.register(name, chaos);
      this.events.trackChaos(chaos);
    }
    if (bulkhead) {
      // Calls already waiting in the replaced bulkhead keep it; it is closed at shutdown with the others.
      const replaced = this.bulkheads.has(name) ? this.bulkheads.get(name) : undefined;
      if (replaced !== undefined) this.retired.add(replaced);
      this.bulkheads.register(name, bulkhead);
      this.events.trackBulkhead(bulkhead);
    }
    for (const plan of this.livePlans) {
      if (!plan.policyNames.has(name)) continue;
      plan.stale = true;
      this.livePlans.delete(plan);
    }
    if (this.globalLimiter !== undefined && this.globalRateLimit === name) this.globalLimiter = undefined;
  }

  /** The plan of a handler, built on first use and whenever a named policy it uses changes. */
  planFor(classRef: Function, handler: Function, instance?: object, methodName?: string): HandlerPlan {
    const plan = this.plans.get(handler)?.get(classRef);
    if (plan !== undefined && !plan.stale) return plan;
    const source = this.sources.get(handler)?.get(classRef);
    if (source !== undefined) return this.compile(classRef, handler, source.methodName, source.kind, source.instance);
    return this.compile(classRef, handler, methodName ?? handler.name, 'controller', instance);
  }

  /** Builds (and caches) a handler's plan. @throws InvalidOptionError naming the class, method, decorator and option. */
  compile(classRef: Function, handler: Function, methodName: string, kind: HandlerKind, instance?: object): HandlerPlan {
    const label = `${classRef.name}.${methodName}`;
    let sources = this.sources.get(handler);
    if (sources === undefined) this.sources.set(handler, (sources = new Map()));
    sources.set(classRef, { methodName, kind, instance });
    const metadata = readMethodMetadata(classRef, handler);
    const policyNames = new Set<string>();
    const requires: Array<readonly [string, keyof PolicyDefinition, string]> = [];
    const pick = (pattern: Exclude<keyof RecordedPatterns, 'policy' | 'skipRateLimit' | 'rateLimit'>) => this.pickSpec(metadata, pattern, label, policyNames);
    /** Records that the handler needs `kind` from the policy its own decorator names (unless inline options or a default stand in). */
    const needs = (picked: { spec: PatternSpec<unknown>; holder: 'method' | 'class' } | undefined, pattern: keyof PolicyDefinition, decorator: string, covered = false) => {
      const named = picked?.spec.name;
      if (named !== undefined && !covered && picked!.spec === metadata[picked!.holder][pattern as keyof RecordedPatterns]) requires.push([named, pattern, decorator]);
    };

    const policies: PipelinePolicies = {};
    const retrySpec = pick('retry');
    needs(retrySpec, 'retry', '@Retry');
    let retryNonIdempotent = false;
    if (retrySpec) {
      const settings = this.merge<RetrySettings>('retry', retrySpec.spec as PatternSpec<RetrySettings>, label, '@Retry');
      retryNonIdempotent = settings.retryNonIdempotent === true;
      policies.retry = wrapInvalid(() => this.buildRetry(settings), `@Retry on ${label}`, 'retry');
      this.events.trackRetry(label, policies.retry as RetryPolicy);
    }
    const breakerSpec = pick('circuitBreaker');
    needs(breakerSpec, 'circuitBreaker', '@CircuitBreaker');
    if (breakerSpec) policies.circuitBreaker = this.sharedOrInline('circuitBreaker', breakerSpec.spec as PatternSpec<CircuitBreakerSettings>, label);
    const bulkheadSpec = pick('bulkhead');
    needs(bulkheadSpec, 'bulkhead', '@Bulkhead');
    if (bulkheadSpec) policies.bulkhead = this.sharedOrInline('bulkhead', bulkheadSpec.spec as PatternSpec<BulkheadSettings>, label);
    const timeoutSpec = pick('timeout');
    needs(timeoutSpec, 'timeout', '@Timeout', timeoutSpec?.spec.options !== undefined || this.options.defaults?.timeout !== undefined);
    if (timeoutSpec) {
      const spec = timeoutSpec.spec as PatternSpec<Duration | TimeoutOptions>;
      const named = spec.name === undefined ? undefined : this.named(spec.name, label, '@Timeout').timeout;
      const value = spec.options ?? named ?? this.options.defaults?.timeout;
      if (value === undefined) throw new InvalidOptionError('timeout', undefined, `a duration (policy "${spec.name}" has no timeout)`, `@Timeout on ${label}`);
      policies.timeout = wrapInvalid(() => this.buildTimeout(value), `@Timeout on ${label}`, 'timeout');
      this.events.trackTimeout(label, policies.timeout as TimeoutPolicy);
    }
    const hedgeSpec = pick('hedge');
    needs(hedgeSpec, 'hedge', '@Hedge');
    if (hedgeSpec) {
      const settings = this.merge<HedgeSettings>('hedge', hedgeSpec.spec as PatternSpec<HedgeSettings>, label, '@Hedge');
      policies.hedge = wrapInvalid(() => this.buildHedge(settings, (policies.retry as RetryPolicy | undefined)?.budget), `@Hedge on ${label}`, 'hedge');
      this.events.trackHedge(label, policies.hedge as HedgePolicy);
    }
    const chaosSpec = pick('chaos');
    needs(chaosSpec, 'chaos', '@Chaos', chaosSpec?.spec.options !== undefined);
    if (chaosSpec) policies.chaos = this.chaosFor(chaosSpec.spec as PatternSpec<ChaosSettings>, label);
    const prioritySpec = pick('loadShedding');
    if (prioritySpec) {
      const priority = (prioritySpec.spec as PatternSpec<PrioritySettings>).options;
      policies.loadShedding = wrapInvalid(() => new LoadSheddingPolicy({ priority }, this.overload, { clock: this.clock }), `@Priority on ${label}`, 'priority');
      this.events.trackLoadShedding(label, policies.loadShedding as LoadSheddingPolicy);
    }
    const fallbackSpec = pick('fallback');
    if (fallbackSpec) {
      const spec = fallbackSpec.spec as PatternSpec<FallbackSettings>;
      const settings = spec.options ?? (spec.name === undefined ? undefined : this.named(spec.name, label, '@Fallback').fallback);
      if (settings === undefined) throw new InvalidOptionError('fallback', undefined, `a fallback (policy "${spec.name}" has none)`, `@Fallback on ${label}`);
      policies.fallback = wrapInvalid(() => this.buildFallback(settings, { classRef, instance, kind }, label), `@Fallback on ${label}`, 'fallback');
      this.events.trackFallback(label, policies.fallback as FallbackPolicy);
    }

    const limitSpecs = this.pickLimits(metadata, label, policyNames);
    for (const spec of metadata.method.rateLimit ?? metadata.class.rateLimit ?? []) if (spec.name !== undefined) requires.push([spec.name, 'rateLimit', '@RateLimit']);
    const skipRateLimit = (metadata.method.skipRateLimit ?? metadata.class.skipRateLimit) === true;
    let limiter: HandlerLimiter | undefined;
    if (limitSpecs.length > 0 && !skipRateLimit) {
      limiter = wrapInvalid(
        () => new HandlerLimiter(resolveLimits(limitSpecs, { handlerId: label, clock: this.clock, store: this.store, provider: kind === 'provider', onEngine: this.trackLimiter }), this.limiterEnvironment()),
        `@RateLimit on ${label}`,
        'rateLimit',
      );
      this.limiters.register(label, limiter);
      if (kind === 'provider') policies.rateLimit = limiter.asPolicy();
    }

    const pipeline = Object.keys(policies).length > 0 ? new Pipeline(policies, this.order) : undefined;
    const dropRetry = policies.retry !== undefined && !retryNonIdempotent;
    const withoutRetry = kind === 'controller' && (dropRetry || policies.hedge !== undefined) ? { ...policies, retry: dropRetry ? undefined : policies.retry, hedge: undefined } : undefined;
    const plan: HandlerPlan = {
      label,
      pipeline,
      pipelineWithoutRetry: withoutRetry === undefined ? pipeline : Object.values(withoutRetry).some(Boolean) ? new Pipeline(withoutRetry, this.order) : undefined,
      limiter,
      skipRateLimit,
      policyNames,
      requires,
      stale: false,
    };
    let plans = this.plans.get(handler);
    if (plans === undefined) this.plans.set(handler, (plans = new Map()));
    plans.set(classRef, plan);
    this.livePlans.add(plan);
    return plan;
  }

  /** The pipeline for one HTTP request: retries only idempotent methods unless allowed. */
  pipelineFor(plan: HandlerPlan, httpMethod: string | undefined): Pipeline | undefined {
    if (httpMethod === undefined || IDEMPOTENT_METHODS.has(httpMethod)) return plan.pipeline;
    return plan.pipelineWithoutRetry;
  }

  /** The limiter of the module's `globalRateLimit`, if any. */
  globalLimit(): HandlerLimiter | undefined {
    if (this.globalRateLimit === undefined) return undefined;
    if (this.globalLimiter !== undefined) return this.globalLimiter;
    const spec: PatternSpec<RateLimitSettings> = typeof this.globalRateLimit === 'string' ? { name: this.globalRateLimit } : { options: this.globalRateLimit };
    const specs = this.expandLimitSpecs([spec], 'globalRateLimit', new Set(), 'policy');
    this.globalLimiter = wrapInvalid(
      () => new HandlerLimiter(resolveLimits(specs, { handlerId: 'global', clock: this.clock, store: this.store, onEngine: this.trackLimiter }), this.limiterEnvironment()),
      'ResilienceModule globalRateLimit',
      'rateLimit',
    );
    this.limiters.register('global', this.globalLimiter);
    return this.globalLimiter;
  }

  /**
   * The context to run a call in: the enclosing call's (a `@Timeout` upstream), else the
   * application's, which shutdown aborts.
   */
  callContext(): CallContext {
    return currentContext() ?? this.lifetime;
  }

  /**
   * Before Nest closes the HTTP server (which waits for the requests in flight): refuses
   * bulkhead waiters, and aborts every call in progress (retry sleeps, pending timeouts,
   * rate-limit waits) with an {@link OperationAbortedError}; new calls are refused the same way.
   */
  beforeApplicationShutdown(): void {
    this.closeBulkheads();
    this.lifetime.abort(new OperationAbortedError(new Error('The application is shutting down')));
  }

  /** Lets the store prepare itself (connect, load scripts) and logs what it warns about (an eviction policy). */
  async onModuleInit(): Promise<void> {
    this.overload?.start();
    const warning = await this.store.prepare?.();
    if (warning !== undefined) new Logger('ResilienceModule').warn(warning);
  }

  async onApplicationShutdown(): Promise<void> {
    this.closeBulkheads();
    this.lifetime.abort(new OperationAbortedError(new Error('The application is shutting down')));
    // Fleet-wide instances stop their background work before the store closes its connections.
    this.overload?.close();
    await Promise.all([...this.breakers.all(), ...this.bulkheads.all(), ...this.retired, ...this.retryBudgets.values()].map((instance) => instance.close?.()));
    // The store closes only the connections it opened itself.
    await this.store.close?.();
  }

  private closeBulkheads(): void {
    for (const bulkhead of this.bulkheads.all()) void bulkhead.close();
    for (const instance of this.retired) if ('onQueue' in instance) void instance.close();
  }

  private limiterEnvironment() {
    return {
      headers: this.options.http?.headers ?? 'ietf',
      ipv6Subnet: this.options.http?.ipv6Subnet ?? 64,
      clientIp: this.options.http?.clientIp,
      errorMapping: this.options.errorMapping,
      transports: this.transports,
    };
  }

  /** @throws InvalidOptionError when `definition` lacks a pattern that a handler names the policy for. */
  private checkRequiredPatterns(name: string, definition: PolicyDefinition, where: string): void {
    for (const plans of this.plans.values()) {
      for (const plan of plans.values()) {
        for (const [policy, kind, decorator] of plan.requires) {
          if (policy !== name || definition[kind] !== undefined) continue;
          throw new InvalidOptionError(`policies.${name}.${kind}`, undefined, `${kind} settings: ${decorator}('${name}') on ${plan.label} uses them`, where);
        }
      }
    }
  }

  private pickSpec(metadata: MethodMetadata, kind: Exclude<keyof RecordedPatterns, 'policy' | 'skipRateLimit' | 'rateLimit'>, label: string, policyNames: Set<string>):
    | { spec: PatternSpec<unknown>; holder: 'method' | 'class' }
    | undefined {
    for (const holder of ['method', 'class'] as const) {
      const recorded = metadata[holder];
      const explicit = recorded[kind];
      if (explicit !== undefined) {
        if (explicit.name !== undefined) policyNames.add(explicit.name);
        return { spec: explicit, holder };
      }
      if (recorded.policy !== undefined) {
        const definition = this.named(recorded.policy, label, '@UseResilience');
        policyNames.add(recorded.policy);
        // `@Priority` has no counterpart in a named policy.
        if (kind !== 'loadShedding' && definition[kind] !== undefined) return { spec: { name: recorded.policy }, holder };
      }
    }
    return undefined;
  }

  private pickLimits(metadata: MethodMetadata, label: string, policyNames: Set<string>): Array<{ settings: RateLimitSettings; policy?: string; scope?: LimitScope }> {
    for (const holder of ['method', 'class'] as const) {
      const recorded = metadata[holder];
      if (recorded.rateLimit !== undefined) return this.expandLimitSpecs(recorded.rateLimit, `@RateLimit on ${label}`, policyNames);
      if (recorded.policy !== undefined) {
        const definition = this.named(recorded.policy, label, '@UseResilience');
        policyNames.add(recorded.policy);
        if (definition.rateLimit !== undefined) return this.expandLimitSpecs([{ name: recorded.policy }], `@UseResilience on ${label}`, policyNames);
      }
    }
    return [];
  }

  private expandLimitSpecs(specs: readonly PatternSpec<RateLimitSettings>[], where: string, policyNames: Set<string>, defaultScope?: LimitScope): Array<{ settings: RateLimitSettings; policy?: string; scope?: LimitScope }> {
    const defaults = this.options.defaults?.rateLimit;
    const result: Array<{ settings: RateLimitSettings; policy?: string; scope?: LimitScope }> = [];
    for (const spec of specs) {
      if (spec.name === undefined) {
        result.push({ settings: { ...defaults, ...spec.options }, scope: defaultScope });
        continue;
      }
      policyNames.add(spec.name);
      const named = this.policies.get(spec.name)?.rateLimit;
      if (named === undefined) throw this.unknownPolicy(spec.name, where, 'rateLimit');
      for (const settings of Array.isArray(named) ? named : [named]) {
        result.push({ settings: { ...defaults, ...settings, ...spec.options }, policy: spec.name, scope: defaultScope });
      }
    }
    return result;
  }

  private sharedOrInline(kind: 'circuitBreaker' | 'bulkhead', spec: PatternSpec<CircuitBreakerSettings | BulkheadSettings>, label: string): CircuitBreakerInstance | BulkheadInstance {
    const decorator = kind === 'circuitBreaker' ? '@CircuitBreaker' : '@Bulkhead';
    const registry = kind === 'circuitBreaker' ? this.breakers : this.bulkheads;
    if (spec.name !== undefined && spec.options === undefined) {
      if (this.named(spec.name, label, decorator)[kind] === undefined) throw this.unknownPolicy(spec.name, `${decorator} on ${label}`, kind);
      return registry.get(spec.name);
    }
    const options = { ...this.merge(kind, spec, label, decorator), name: label };
    // A plan rebuilt after a named policy changed keeps its inline instances (and their state)
    // when their own settings did not change.
    const previous = this.inlineInstances.get(`${kind}:${label}`) as { options: object; instance: CircuitBreakerInstance | BulkheadInstance } | undefined;
    if (previous !== undefined && sameValue(previous.options, options)) return previous.instance;
    const where = `${decorator} on ${label}`;
    if (previous !== undefined) this.retired.add(previous.instance);
    let instance: CircuitBreakerInstance | BulkheadInstance;
    if (kind === 'circuitBreaker') {
      const breaker = wrapInvalid(() => this.buildBreaker(options as CircuitBreakerSettings), where, kind);
      this.breakers.register(label, breaker);
      this.events.trackCircuitBreaker(breaker);
      instance = breaker;
    } else {
      const bulkhead = wrapInvalid(() => this.buildBulkhead(options as BulkheadSettings), where, kind);
      this.bulkheads.register(label, bulkhead);
      this.events.trackBulkhead(bulkhead);
      instance = bulkhead;
    }
    this.inlineInstances.set(`${kind}:${label}`, { options, instance });
    return instance;
  }

  private merge<T extends object>(kind: 'circuitBreaker' | 'bulkhead' | 'retry' | 'hedge', spec: PatternSpec<T>, label: string, decorator: string): T {
    const defaults = (this.options.defaults?.[kind] ?? {}) as T;
    const named = spec.name === undefined ? undefined : (this.named(spec.name, label, decorator)[kind] as T | undefined);
    if (spec.name !== undefined && named === undefined) throw this.unknownPolicy(spec.name, `${decorator} on ${label}`, kind);
    return { ...defaults, ...named, ...spec.options } as T;
  }

  private named(name: string, label: string, decorator: string): PolicyDefinition {
    const definition = this.policies.get(name);
    if (definition === undefined) throw this.unknownPolicy(name, `${decorator} on ${label}`);
    return definition;
  }

  private unknownPolicy(name: string, where: string, kind?: string): InvalidOptionError {
    const names = [...this.policies.keys()];
    if (kind !== undefined && this.policies.has(name)) return new InvalidOptionError('policy', name, `a policy that defines ${kind} (policy "${name}" has none)`, where);
    return new InvalidOptionError('policy', name, names.length ? `one of the named policies: ${names.join(', ')}` : 'a policy declared in ResilienceModule.forRoot({ policies }) (none are)', where);
  }

  /** A local breaker, or a fleet-wide one from the store when `shared` is set. */
  private buildBreaker(settings: CircuitBreakerSettings): CircuitBreakerInstance {
    const { shared, quorum, syncInterval, ...local } = settings;
    if (shared !== undefined && typeof shared !== 'boolean') throw new InvalidOptionError('shared', shared, 'true or false');
    if (shared === true) {
      if (this.store.createSharedCircuitBreaker === undefined) {
        throw new InvalidOptionError('shared', true, `a store shared by the fleet (RedisStore from 'nest-resilience/redis'); the module's store is "${this.store.kind}"`);
      }
      return this.store.createSharedCircuitBreaker({ ...local, quorum, syncInterval }, this.clock);
    }
    if (quorum !== undefined) throw new InvalidOptionError('quorum', quorum, 'shared: true (quorum applies to shared breakers only)');
    if (syncInterval !== undefined) throw new InvalidOptionError('syncInterval', syncInterval, 'shared: true (syncInterval applies to shared breakers only)');
    return new CircuitBreakerPolicy(local, { clock: this.clock });
  }

  /** A local bulkhead, or a fleet-wide one from the store when `distributed` is set. */
  private buildBulkhead(settings: BulkheadSettings): BulkheadInstance {
    const { distributed, leaseTtl, adaptive, ...local } = settings;
    if (distributed !== undefined && typeof distributed !== 'boolean') throw new InvalidOptionError('distributed', distributed, 'true or false');
    if (adaptive !== undefined) {
      if (distributed === true) throw new InvalidOptionError('adaptive', adaptive, 'no adaptive limit on a distributed bulkhead (its cap is the fleet\'s)');
      if (local.maxConcurrent !== undefined) throw new InvalidOptionError('maxConcurrent', local.maxConcurrent, 'no maxConcurrent with adaptive (the limit finds itself between adaptive.minLimit and adaptive.maxLimit)');
      if (leaseTtl !== undefined) throw new InvalidOptionError('leaseTtl', leaseTtl, 'distributed: true (leaseTtl applies to distributed bulkheads only)');
      const { maxConcurrent: _unused, ...rest } = local;
      return new AdaptiveBulkheadPolicy({ ...rest, adaptive }, { clock: this.clock });
    }
    if (distributed === true) {
      if (this.store.createDistributedBulkhead === undefined) {
        throw new InvalidOptionError('distributed', true, `a store shared by the fleet (RedisStore from 'nest-resilience/redis'); the module's store is "${this.store.kind}"`);
      }
      return this.store.createDistributedBulkhead({ ...local, leaseTtl }, this.clock);
    }
    if (leaseTtl !== undefined) throw new InvalidOptionError('leaseTtl', leaseTtl, 'distributed: true (leaseTtl applies to distributed bulkheads only)');
    return new BulkheadPolicy(local, { clock: this.clock });
  }

  private buildRetry(settings: RetrySettings): RetryPolicy {
    const { retryNonIdempotent, budget, ...retry } = { ...this.options.defaults?.retry, ...settings };
    if (retryNonIdempotent !== undefined && typeof retryNonIdempotent !== 'boolean') throw new InvalidOptionError('retryNonIdempotent', retryNonIdempotent, 'true or false');
    return new RetryPolicy({ ...retry, budget: this.budgetFor(budget) }, { clock: this.clock });
  }

  /**
   * @param retryBudget the budget of the retry around the hedge, if any: when both name the same
   *   budget, only the retry deposits for a call (each retry re-enters the hedge, and would
   *   otherwise deposit again as if it were a new call).
   */
  private buildHedge(settings: HedgeSettings, retryBudget?: RetryBudgetInstance): HedgePolicy {
    const { budget, ...hedge } = settings;
    const resolved = this.budgetFor(budget);
    const shared = retryBudget !== undefined && resolved === retryBudget ? withdrawalsOnly(retryBudget) : resolved;
    return new HedgePolicy({ ...hedge, budget: shared }, { clock: this.clock });
  }

  /** A named budget of the module, or the inline options (the engine builds a budget of its own). */
  private budgetFor(budget: string | RetryBudgetOptions | undefined): RetryBudgetInstance | RetryBudgetOptions | undefined {
    if (typeof budget !== 'string') return budget;
    const named = this.retryBudgets.get(budget);
    if (named !== undefined) return named;
    const names = [...this.retryBudgets.keys()];
    throw new InvalidOptionError('budget', budget, names.length ? `one of the module's retryBudgets: ${names.join(', ')}` : "a budget declared in ResilienceModule.forRoot({ retryBudgets }) (none are)");
  }

  private buildRetryBudget(name: string, settings: RetryBudgetSettings): RetryBudgetInstance {
    if (typeof settings !== 'object' || settings === null) throw new InvalidOptionError('', settings, 'an object of retry budget options');
    const { distributed, ...options } = settings;
    if (distributed !== undefined && typeof distributed !== 'boolean') throw new InvalidOptionError('distributed', distributed, 'true or false');
    if (distributed !== true) return new RetryBudget({ ...options, name }, { clock: this.clock });
    if (this.store.createRetryBudget === undefined) {
      throw new InvalidOptionError('distributed', true, `a store shared by the fleet (RedisStore from 'nest-resilience/redis'); the module's store is "${this.store.kind}"`);
    }
    return this.store.createRetryBudget({ ...options, name }, this.clock);
  }

  /** The chaos policy of a named policy (shared), or one per handler for inline options. */
  private chaosFor(spec: PatternSpec<ChaosSettings>, label: string): ChaosPolicy {
    if (spec.name !== undefined && spec.options === undefined) {
      if (this.named(spec.name, label, '@Chaos').chaos === undefined) throw this.unknownPolicy(spec.name, `@Chaos on ${label}`, 'chaos');
      return this.chaos.get(spec.name);
    }
    const named = spec.name === undefined ? undefined : this.named(spec.name, label, '@Chaos').chaos;
    const options = { ...named, ...spec.options };
    // A plan rebuilt after a named policy changed keeps its chaos policy, switched as it was.
    const previous = this.inlineInstances.get(`chaos:${label}`);
    if (previous !== undefined && sameValue(previous.options, options)) return previous.instance as ChaosPolicy;
    const chaos = wrapInvalid(() => this.buildChaos(options, label), `@Chaos on ${label}`, 'chaos');
    if (previous !== undefined && !(previous.instance as ChaosPolicy).enabled && options.enabled === undefined) chaos.disable();
    this.inlineInstances.set(`chaos:${label}`, { options, instance: chaos });
    this.chaos.register(label, chaos);
    this.events.trackChaos(chaos);
    return chaos;
  }

  private buildChaos(settings: ChaosSettings, name: string): ChaosPolicy {
    if (typeof settings !== 'object' || settings === null) throw new InvalidOptionError('', settings, 'an object of chaos options');
    return new ChaosPolicy({ ...settings, name }, { clock: this.clock, allowInProduction: this.options.chaos?.allowInProduction });
  }

  private buildTimeout(value: Duration | TimeoutOptions): TimeoutPolicy {
    return new TimeoutPolicy(value, { clock: this.clock });
  }

  private buildFallback(
    settings: FallbackSettings,
    owner: { classRef: Function; instance?: object; kind: HandlerKind } | undefined,
    label: string,
  ): FallbackPolicy {
    if (typeof settings === 'function') return new FallbackPolicy({ handler: settings });
    const methodName = typeof settings === 'string' ? settings : typeof settings === 'object' && settings !== null && 'method' in settings ? settings.method : undefined;
    // Option paths relative to the fallback: the caller prefixes them with `fallback`.
    const methodOption = typeof settings === 'string' ? '' : 'method';
    const handles = typeof settings === 'object' && settings !== null ? settings.handles : undefined;
    if (methodName !== undefined) {
      if (owner === undefined) return new FallbackPolicy({ handler: () => undefined, handles });
      const method = (owner.classRef.prototype as Record<string, unknown>)[methodName];
      if (typeof method !== 'function') {
        throw new InvalidOptionError(methodOption, methodName, `the name of a method of ${owner.classRef.name} (it has no method "${methodName}")`);
      }
      if (owner.instance === undefined) {
        throw new InvalidOptionError(methodOption, methodName, `a function or { value }: ${label} has no singleton instance to call "${methodName}" on (request-scoped?)`);
      }
      const target = owner.instance as Record<string, (...args: unknown[]) => unknown>;
      return new FallbackPolicy({ handler: (error: unknown, ...args: unknown[]) => target[methodName]!(error, ...args), handles });
    }
    if (typeof settings === 'object' && settings !== null && 'handler' in settings) return new FallbackPolicy({ handler: settings.handler, handles: settings.handles });
    if (typeof settings === 'object' && settings !== null && 'value' in settings) return new FallbackPolicy({ value: settings.value, handles: settings.handles });
    throw new InvalidOptionError('', settings, 'a function (error, ...args) => value, a method name, { handler }, { method } or { value }');
  }
}

/** A view of a budget that withdraws but never deposits. */
function withdrawalsOnly(budget: RetryBudgetInstance): RetryBudgetInstance {
  return { name: budget.name, recordCall: () => undefined, tryAcquire: () => budget.tryAcquire() };
}

/**
 * Whether two settings hold the same values: primitives and functions by identity, arrays item by
 * item, plain objects key by key (settings that travelled as JSON compare equal to the originals).
 */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((item, index) => sameValue(item, b[index]));
  if (!isPlainObject(a) || !isPlainObject(b)) return false;
  const keys = Object.keys(a).filter((key) => a[key] !== undefined);
  return keys.length === Object.keys(b).filter((key) => b[key] !== undefined).length && keys.every((key) => sameValue(a[key], b[key]));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Runs `build`; an option error gets the place it was written and the pattern's option path. */
export function wrapInvalid<T>(build: () => T, where: string, scope?: string): T {
  try {
    return build();
  } catch (error) {
    if (!(error instanceof InvalidOptionError) || error.where) throw error;
    // `[1].limit` under `rateLimit` reads `rateLimit[1].limit`, not `rateLimit.[1].limit`.
    const option = scope === undefined ? error.option : error.option === '' || error.option.startsWith('[') ? `${scope}${error.option}` : `${scope}.${error.option}`;
    throw new InvalidOptionError(option, error.value, error.expected, where);
  }
}
