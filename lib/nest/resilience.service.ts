import { Inject, Injectable, Logger, Optional, type BeforeApplicationShutdown, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { systemClock, type Clock } from '../core/clock.js';
import { CallContext, currentContext } from '../core/context.js';
import type { Duration } from '../core/duration.js';
import { InvalidOptionError, OperationAbortedError } from '../core/errors.js';
import { Pipeline, resolveOrder, type PipelinePolicies, type PolicyKind } from '../core/pipeline.js';
import type { BulkheadInstance } from '../policies/bulkhead/bulkhead.instance.js';
import { BulkheadPolicy } from '../policies/bulkhead/bulkhead.policy.js';
import type { CircuitBreakerInstance } from '../policies/circuit-breaker/circuit-breaker.instance.js';
import { CircuitBreakerPolicy } from '../policies/circuit-breaker/circuit-breaker.policy.js';
import { FallbackPolicy } from '../policies/fallback/fallback.policy.js';
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
import type { BulkheadSettings, CircuitBreakerSettings, FallbackSettings, PolicyDefinition, RateLimitSettings, ResilienceModuleOptions, RetrySettings } from './resilience.options.js';
import { BulkheadRegistry } from './registries/bulkhead.registry.js';
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
  /** The same without retry, for non-idempotent HTTP requests when the retry does not allow them. */
  readonly pipelineWithoutRetry: Pipeline | undefined;
  /** The rate limits a controller's guard enforces. */
  readonly limiter: HandlerLimiter | undefined;
  readonly skipRateLimit: boolean;
  /** Named policies the plan was built from; an update to one of them rebuilds the plan. */
  readonly policyNames: ReadonlySet<string>;
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
  private readonly inlineInstances = new Map<string, { options: object; instance: CircuitBreakerInstance | BulkheadInstance }>();
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

  constructor(
    @Inject(RESILIENCE_MODULE_OPTIONS) readonly options: ResilienceModuleOptions,
    readonly breakers: CircuitBreakerRegistry,
    readonly bulkheads: BulkheadRegistry,
    readonly limiters: RateLimiterRegistry,
    readonly events: ResilienceEvents,
    @Optional() @Inject(GLOBAL_RATE_LIMIT) private readonly globalRateLimit?: string | RateLimitSettings,
  ) {
    this.clock = options.clock ?? systemClock;
    this.store = options.store ?? new MemoryStore();
    this.order = wrapInvalid(() => resolveOrder(options.order, 'order'), 'ResilienceModule.forRoot');
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
   * Validates a named policy and (re)builds its shared instances: the breaker, the bulkhead.
   * Nothing changes when validation fails.
   */
  definePolicy(name: string, definition: PolicyDefinition, where: string): void {
    if (typeof definition !== 'object' || definition === null) throw new InvalidOptionError(`policies.${name}`, definition, 'an object of pattern settings', where);
    const known = ['circuitBreaker', 'rateLimit', 'retry', 'timeout', 'bulkhead', 'fallback'];
    for (const key of Object.keys(definition)) {
      if (!known.includes(key)) throw new InvalidOptionError(`policies.${name}.${key}`, (definition as Record<string, unknown>)[key], `one of ${known.join(', ')}`, where);
    }
    const defaults = this.options.defaults ?? {};
    const breaker = definition.circuitBreaker
      ? wrapInvalid(() => this.buildBreaker({ ...defaults.circuitBreaker, ...definition.circuitBreaker, name }), where, 'circuitBreaker')
      : undefined;
    const bulkhead = definition.bulkhead ? wrapInvalid(() => this.buildBulkhead({ ...defaults.bulkhead, ...definition.bulkhead, name }), where, 'bulkhead') : undefined;
    if (definition.retry) wrapInvalid(() => this.buildRetry(definition.retry!), where, 'retry');
    if (definition.timeout !== undefined) wrapInvalid(() => this.buildTimeout(definition.timeout!), where, 'timeout');
    if (definition.rateLimit !== undefined) {
      const list = Array.isArray(definition.rateLimit) ? definition.rateLimit : [definition.rateLimit];
      wrapInvalid(() => resolveLimits(list.map((settings) => ({ settings: { ...defaults.rateLimit, ...settings }, policy: name })), { handlerId: name, clock: this.clock, store: this.store }), where, 'rateLimit');
    }
    if (definition.fallback !== undefined && typeof definition.fallback !== 'string') {
      wrapInvalid(() => this.buildFallback(definition.fallback!, undefined, 'named'), where, 'fallback');
    }
    this.policies.set(name, definition);
    if (breaker) {
      const replaced = this.breakers.has(name) ? this.breakers.get(name) : undefined;
      if (replaced !== undefined) this.retired.add(replaced);
      this.breakers.register(name, breaker);
      this.events.trackCircuitBreaker(breaker);
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
    const pick = (pattern: Exclude<keyof RecordedPatterns, 'policy' | 'skipRateLimit' | 'rateLimit'>) => this.pickSpec(metadata, pattern, label, policyNames);

    const policies: PipelinePolicies = {};
    const retrySpec = pick('retry');
    let retryNonIdempotent = false;
    if (retrySpec) {
      const settings = this.merge<RetrySettings>('retry', retrySpec.spec as PatternSpec<RetrySettings>, label, '@Retry');
      retryNonIdempotent = settings.retryNonIdempotent === true;
      policies.retry = wrapInvalid(() => this.buildRetry(settings), `@Retry on ${label}`, 'retry');
      this.events.trackRetry(label, policies.retry as RetryPolicy);
    }
    const breakerSpec = pick('circuitBreaker');
    if (breakerSpec) policies.circuitBreaker = this.sharedOrInline('circuitBreaker', breakerSpec.spec as PatternSpec<CircuitBreakerSettings>, label);
    const bulkheadSpec = pick('bulkhead');
    if (bulkheadSpec) policies.bulkhead = this.sharedOrInline('bulkhead', bulkheadSpec.spec as PatternSpec<BulkheadSettings>, label);
    const timeoutSpec = pick('timeout');
    if (timeoutSpec) {
      const spec = timeoutSpec.spec as PatternSpec<Duration | TimeoutOptions>;
      const named = spec.name === undefined ? undefined : this.named(spec.name, label, '@Timeout').timeout;
      const value = spec.options ?? named ?? this.options.defaults?.timeout;
      if (value === undefined) throw new InvalidOptionError('timeout', undefined, `a duration (policy "${spec.name}" has no timeout)`, `@Timeout on ${label}`);
      policies.timeout = wrapInvalid(() => this.buildTimeout(value), `@Timeout on ${label}`, 'timeout');
      this.events.trackTimeout(label, policies.timeout as TimeoutPolicy);
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
    const withoutRetry = kind === 'controller' && policies.retry !== undefined && !retryNonIdempotent ? { ...policies, retry: undefined } : undefined;
    const plan: HandlerPlan = {
      label,
      pipeline,
      pipelineWithoutRetry: withoutRetry === undefined ? pipeline : Object.values(withoutRetry).some(Boolean) ? new Pipeline(withoutRetry, this.order) : undefined,
      limiter,
      skipRateLimit,
      policyNames,
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
    const warning = await this.store.prepare?.();
    if (warning !== undefined) new Logger('ResilienceModule').warn(warning);
  }

  async onApplicationShutdown(): Promise<void> {
    this.closeBulkheads();
    this.lifetime.abort(new OperationAbortedError(new Error('The application is shutting down')));
    // Fleet-wide instances stop their background work before the store closes its connections.
    await Promise.all([...this.breakers.all(), ...this.bulkheads.all(), ...this.retired].map((instance) => instance.close?.()));
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
        if (definition[kind] !== undefined) return { spec: { name: recorded.policy }, holder };
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
    const previous = this.inlineInstances.get(`${kind}:${label}`);
    if (previous !== undefined && sameSettings(previous.options, options)) return previous.instance;
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

  private merge<T extends object>(kind: 'circuitBreaker' | 'bulkhead' | 'retry', spec: PatternSpec<T>, label: string, decorator: string): T {
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
    const { distributed, leaseTtl, ...local } = settings;
    if (distributed !== undefined && typeof distributed !== 'boolean') throw new InvalidOptionError('distributed', distributed, 'true or false');
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
    const { retryNonIdempotent, ...retry } = { ...this.options.defaults?.retry, ...settings };
    if (retryNonIdempotent !== undefined && typeof retryNonIdempotent !== 'boolean') throw new InvalidOptionError('retryNonIdempotent', retryNonIdempotent, 'true or false');
    return new RetryPolicy(retry, { clock: this.clock });
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

/** Whether two settings objects hold the same values (functions and list items compared by identity). */
function sameSettings(a: object, b: object): boolean {
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = Object.keys(left);
  if (keys.length !== Object.keys(right).length) return false;
  return keys.every((key) => {
    const x = left[key];
    const y = right[key];
    if (Array.isArray(x) && Array.isArray(y)) return x.length === y.length && x.every((item, index) => item === y[index]);
    return x === y;
  });
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
