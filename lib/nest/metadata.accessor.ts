import type { Duration } from '../core/duration.js';
import type { PolicyKind } from '../core/pipeline.js';
import type { TimeoutOptions } from '../policies/timeout/timeout.options.js';
import {
  BulkheadMetadata,
  ChaosMetadata,
  CircuitBreakerMetadata,
  FallbackMetadata,
  HedgeMetadata,
  PriorityMetadata,
  RetryMetadata,
  TimeoutMetadata,
  UseResilienceMetadata,
  type PatternSpec,
} from './decorators/decorator-metadata.js';
import { RATE_LIMIT_METADATA, SKIP_RATE_LIMIT_METADATA } from './resilience.constants.js';
import type {
  BulkheadSettings,
  ChaosSettings,
  CircuitBreakerSettings,
  FallbackSettings,
  HedgeSettings,
  PrioritySettings,
  RateLimitSettings,
  RetrySettings,
} from './resilience.options.js';

/** What the decorators recorded on one holder (a method, or its class). */
export interface RecordedPatterns {
  circuitBreaker?: PatternSpec<CircuitBreakerSettings>;
  retry?: PatternSpec<RetrySettings>;
  timeout?: PatternSpec<Duration | TimeoutOptions>;
  bulkhead?: PatternSpec<BulkheadSettings>;
  fallback?: PatternSpec<FallbackSettings>;
  hedge?: PatternSpec<HedgeSettings>;
  chaos?: PatternSpec<ChaosSettings>;
  loadShedding?: PatternSpec<PrioritySettings>;
  rateLimit?: PatternSpec<RateLimitSettings>[];
  /** `@UseResilience` on this holder. */
  policy?: string;
  skipRateLimit?: boolean;
}

/** The method's and its class's records; the method's win, pattern by pattern. */
export interface MethodMetadata {
  method: RecordedPatterns;
  class: RecordedPatterns;
}

const SINGLE: ReadonlyArray<[Exclude<PolicyKind, 'rateLimit'>, { KEY: string }]> = [
  ['circuitBreaker', CircuitBreakerMetadata],
  ['retry', RetryMetadata],
  ['timeout', TimeoutMetadata],
  ['bulkhead', BulkheadMetadata],
  ['fallback', FallbackMetadata],
  ['hedge', HedgeMetadata],
  ['chaos', ChaosMetadata],
  ['loadShedding', PriorityMetadata],
];

function readHolder(holder: object): RecordedPatterns {
  const recorded: RecordedPatterns = {};
  for (const [kind, decorator] of SINGLE) {
    const spec: unknown = Reflect.getMetadata(decorator.KEY, holder);
    if (spec !== undefined) (recorded as Record<string, unknown>)[kind] = spec;
  }
  const limits: PatternSpec<RateLimitSettings>[] | undefined = Reflect.getMetadata(RATE_LIMIT_METADATA, holder);
  if (limits !== undefined) recorded.rateLimit = limits;
  const policy: string | undefined = Reflect.getMetadata(UseResilienceMetadata.KEY, holder);
  if (policy !== undefined) recorded.policy = policy;
  const skip: boolean | undefined = Reflect.getMetadata(SKIP_RATE_LIMIT_METADATA, holder);
  if (skip !== undefined) recorded.skipRateLimit = skip;
  return recorded;
}

/** The only reader of our metadata. */
export function readMethodMetadata(classRef: Function, method: Function): MethodMetadata {
  return { method: readHolder(method), class: readHolder(classRef) };
}

/** Whether a method (or its class) carries any of our pattern decorators. */
export function hasResilienceMetadata(metadata: MethodMetadata): boolean {
  return [metadata.method, metadata.class].some((recorded) =>
    Object.keys(recorded).some((key) => key !== 'skipRateLimit'),
  );
}
