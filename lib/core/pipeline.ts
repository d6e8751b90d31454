import { CallContext, NO_CONTEXT, type Task } from './context.js';
import { InvalidOptionError } from './errors.js';
import { executeWith, invoke, type Policy } from './policy.js';

/** The kinds of policy a pipeline can hold. */
export type PolicyKind = 'rateLimit' | 'loadShedding' | 'fallback' | 'retry' | 'hedge' | 'circuitBreaker' | 'timeout' | 'bulkhead' | 'chaos';

/**
 * The canonical order, outermost first. A rate-limited or shed call is neither retried nor sent
 * to the fallback; a retry re-enters the hedge and the breaker; each attempt (and each hedged
 * attempt) gets its own timeout, which also bounds the wait for a bulkhead permit; the bulkhead
 * holds its permit only while the method runs; injected faults stand where the dependency is.
 */
export const DEFAULT_ORDER: readonly PolicyKind[] = Object.freeze([
  'rateLimit',
  'loadShedding',
  'fallback',
  'retry',
  'hedge',
  'circuitBreaker',
  'timeout',
  'bulkhead',
  'chaos',
]);

/** A policy that also takes the call's arguments (the fallback). */
export interface ArgumentAwarePolicy extends Policy {
  run<T>(fn: Task<T>, context: CallContext | undefined, args?: readonly unknown[]): Promise<T>;
}

/** A policy that decides per key (the rate limiter). */
export interface KeyedPolicy extends Policy {
  /** Runs `fn` under the decision for `key` instead of the policy's default key. */
  runWithKey<T>(key: string, fn: Task<T>, context: CallContext | undefined): Promise<T>;
}

/** The policies of a pipeline, each optional. */
export interface PipelinePolicies {
  /** A {@link RateLimitPolicy} (or any keyed policy): outermost by default. */
  rateLimit?: KeyedPolicy;
  /** A {@link LoadSheddingPolicy}: gives the call its priority and sheds it under overload. */
  loadShedding?: ArgumentAwarePolicy;
  /** A {@link FallbackPolicy}: sees the outcome after every retry. */
  fallback?: ArgumentAwarePolicy;
  /** A {@link RetryPolicy}: each attempt re-enters the layers inside it. */
  retry?: Policy;
  /** A {@link HedgePolicy}: starts another attempt when one is slow; each re-enters the layers inside. */
  hedge?: Policy;
  /** A {@link CircuitBreakerPolicy} (or a fleet-wide breaker): records each attempt. */
  circuitBreaker?: Policy;
  /** A {@link TimeoutPolicy}: one deadline per attempt, which also bounds the bulkhead wait. */
  timeout?: Policy;
  /** A {@link BulkheadPolicy} (or a fleet-wide bulkhead): innermost, held only while the task runs. */
  bulkhead?: Policy;
  /** A {@link ChaosPolicy}: innermost, where the dependency would fail. */
  chaos?: Policy;
}

/** Per-call inputs besides the task. */
export interface PipelineCall {
  /** The method's arguments, handed to the fallback handler and to a priority function. */
  args?: readonly unknown[];
  /** The rate-limit key of this call. @default the rate limiter's own default key */
  key?: string;
}

interface Layer {
  kind: PolicyKind;
  policy: Policy;
}

/**
 * Validates an order override: a permutation of some or all policy kinds, each at most once.
 * @throws InvalidOptionError naming the offending entry.
 */
export function resolveOrder(order: readonly string[] | undefined, option = 'order'): readonly PolicyKind[] {
  if (order === undefined) return DEFAULT_ORDER;
  if (!Array.isArray(order)) throw new InvalidOptionError(option, order, `an array of ${DEFAULT_ORDER.join(', ')}`);
  const seen = new Set<string>();
  for (const [index, kind] of order.entries()) {
    if (!DEFAULT_ORDER.includes(kind as PolicyKind)) throw new InvalidOptionError(`${option}[${index}]`, kind, `one of ${DEFAULT_ORDER.join(', ')}`);
    if (seen.has(kind)) throw new InvalidOptionError(`${option}[${index}]`, kind, 'each kind at most once');
    seen.add(kind);
  }
  // Kinds left out of an override keep their canonical relative order, innermost.
  return [...order, ...DEFAULT_ORDER.filter((kind) => !seen.has(kind))] as PolicyKind[];
}

/**
 * Composes policies around a task in one order (canonical by default):
 * `RateLimit → LoadShedding → Fallback → Retry → Hedge → CircuitBreaker → Timeout → Bulkhead → Chaos → task`.
 * Each layer hands the next one the call's context, so an abort or deadline reaches every layer.
 */
export class Pipeline {
  private readonly layers: readonly Layer[];

  /**
   * @param policies the policies to compose, each optional; the order they are given in does not matter.
   * @param order the kinds, outermost first; kinds left out keep their canonical relative order, innermost.
   * @throws InvalidOptionError when `order` names an unknown kind or one kind twice.
   */
  constructor(
    /** The policies it holds. */
    readonly policies: Readonly<PipelinePolicies>,
    order: readonly PolicyKind[] = DEFAULT_ORDER,
  ) {
    const layers: Layer[] = [];
    for (const kind of order === DEFAULT_ORDER ? order : resolveOrder(order)) {
      const policy = policies[kind];
      if (policy !== undefined) layers.push({ kind, policy });
    }
    this.layers = layers;
  }

  /** Whether the pipeline holds no policy at all. */
  get isEmpty(): boolean {
    return this.layers.length === 0;
  }

  /**
   * Runs `fn` through every layer.
   * @param context the caller's context or `AbortSignal`; by default the context of the call in progress.
   * @param call the method's arguments (for the fallback) and the rate-limit key.
   */
  execute<T>(fn: Task<T>, context?: CallContext | AbortSignal, call?: PipelineCall): Promise<T> {
    return executeWith((resolved) => this.runLayer(0, fn, resolved, call), context);
  }

  private runLayer<T>(index: number, fn: Task<T>, context: CallContext | undefined, call: PipelineCall | undefined): Promise<T> {
    const layers = this.layers;
    if (index === layers.length) return invoke(fn, context ?? NO_CONTEXT);
    const layer = layers[index]!;
    const next: Task<T> = (inner) => this.runLayer(index + 1, fn, inner, call);
    switch (layer.kind) {
      case 'fallback':
      case 'loadShedding':
        return (layer.policy as ArgumentAwarePolicy).run(next, context, call?.args);
      case 'rateLimit':
        return call?.key === undefined ? layer.policy.run(next, context) : (layer.policy as KeyedPolicy).runWithKey(call.key, next, context);
      default:
        return layer.policy.run(next, context);
    }
  }
}
