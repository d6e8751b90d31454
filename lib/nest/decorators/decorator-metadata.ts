import { Reflector } from '@nestjs/core';
import type { Duration } from '../../core/duration.js';
import type { TimeoutOptions } from '../../policies/timeout/timeout.options.js';
import type { BulkheadSettings, ChaosSettings, CircuitBreakerSettings, FallbackSettings, HedgeSettings, PrioritySettings, RetrySettings } from '../resilience.options.js';

/** What a pattern decorator records: a policy name, inline options, or both (inline wins). */
export interface PatternSpec<T> {
  /** The named policy the decorator refers to, if any. */
  readonly name?: string;
  /** The options written in the decorator, merged over the named policy's. */
  readonly options?: T;
}

/** Metadata of `@CircuitBreaker`. */
export const CircuitBreakerMetadata = Reflector.createDecorator<PatternSpec<CircuitBreakerSettings>>();
/** Metadata of `@Retry`. */
export const RetryMetadata = Reflector.createDecorator<PatternSpec<RetrySettings>>();
/** Metadata of `@Timeout`. */
export const TimeoutMetadata = Reflector.createDecorator<PatternSpec<Duration | TimeoutOptions>>();
/** Metadata of `@Bulkhead`. */
export const BulkheadMetadata = Reflector.createDecorator<PatternSpec<BulkheadSettings>>();
/** Metadata of `@Fallback`. */
export const FallbackMetadata = Reflector.createDecorator<PatternSpec<FallbackSettings>>();
/** Metadata of `@Hedge`. */
export const HedgeMetadata = Reflector.createDecorator<PatternSpec<HedgeSettings>>();
/** Metadata of `@Chaos`. */
export const ChaosMetadata = Reflector.createDecorator<PatternSpec<ChaosSettings>>();
/** Metadata of `@Priority`. */
export const PriorityMetadata = Reflector.createDecorator<PatternSpec<PrioritySettings>>();
/** Metadata of `@UseResilience`. */
export const UseResilienceMetadata = Reflector.createDecorator<string>();

