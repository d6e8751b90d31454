import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import type { CircuitState } from '../../policies/circuit-breaker/circuit-breaker.options.js';
import type { ResilienceStore } from '../../stores/store.interface.js';
import { resolveResilience, type ResilienceRefs } from '../shared/resilience-refs.js';

/** Options of {@link CircuitBreakerHealthIndicator.isHealthy}. */
export interface CircuitBreakerHealthOptions {
  /**
   * The breakers to check, by name (a named policy, or `Class.method` for inline options). A name
   * no breaker has is reported down (`state: 'UNKNOWN'`), so a misspelt check cannot pass silently.
   * @default every breaker of the application
   */
  breakers?: string[];
  /** States that make a breaker unhealthy. @default ['OPEN', 'FORCED_OPEN'] */
  downStates?: CircuitState[];
}

/** What the health details say about one breaker. */
export interface CircuitBreakerHealthDetails {
  /** The breaker's state; `'UNKNOWN'` for a name no breaker has. */
  state: CircuitState | 'UNKNOWN';
  /** Failures per call in the sliding window, in percent. */
  failureRate?: number;
  /** Calls in the sliding window. */
  calls?: number;
  /** When OPEN: milliseconds until the next probe. */
  openUntilMs?: number;
}

const DEFAULT_DOWN_STATES: readonly CircuitState[] = ['OPEN', 'FORCED_OPEN'];

/**
 * A `@nestjs/terminus` health indicator: down when any breaker (or any of the named ones) is
 * OPEN or FORCED_OPEN, with the state of each breaker in the details. HALF_OPEN counts as up: the
 * breaker is probing its way back.
 *
 * @example
 * \@Get('health')
 * \@HealthCheck()
 * check() {
 *   return this.health.check([() => this.breakers.isHealthy('circuits', { breakers: ['payments'] })]);
 * }
 */
@Injectable()
export class CircuitBreakerHealthIndicator {
  private refs: ResilienceRefs | undefined;

  /** Built by Nest's injector (provided by `ResilienceHealthModule`, or listed next to `TerminusModule`). */
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly moduleRef: ModuleRef,
  ) {}

  /**
   * Checks the breakers; resolves with `{ [key]: { status, breakers: { name: details } } }`, plus
   * `unhealthy: names` when down.
   * Terminus answers 503 when the status is down.
   */
  async isHealthy<const Key extends string>(key: Key, options: CircuitBreakerHealthOptions = {}): Promise<HealthIndicatorResult<Key>> {
    const indicator = this.health.check(key);
    const registry = (this.refs ??= resolveResilience(this.moduleRef, 'CircuitBreakerHealthIndicator')).breakers;
    const downStates = options.downStates ?? DEFAULT_DOWN_STATES;
    const names = options.breakers ?? registry.names();
    const breakers: Record<string, CircuitBreakerHealthDetails> = {};
    const unhealthy: string[] = [];
    for (const name of names) {
      if (!registry.has(name)) {
        breakers[name] = { state: 'UNKNOWN' };
        unhealthy.push(name);
        continue;
      }
      const stats = registry.get(name).stats();
      breakers[name] = {
        state: stats.state,
        failureRate: stats.failureRate,
        calls: stats.calls,
        ...(stats.openUntilMs === undefined ? {} : { openUntilMs: stats.openUntilMs }),
      };
      if (downStates.includes(stats.state)) unhealthy.push(name);
    }
    return unhealthy.length === 0 ? indicator.up({ breakers }) : indicator.down({ breakers, unhealthy });
  }
}

/** Options of {@link ResilienceStoreHealthIndicator.isHealthy}. */
export interface ResilienceStoreHealthOptions {
  /** Milliseconds the store's `ping()` may take before the store counts as unreachable. @default 1000 */
  timeout?: number;
}

/** A store that can tell whether its backend answers (the Redis store). */
type PingableStore = ResilienceStore & { ping?(): Promise<unknown> };

/**
 * A `@nestjs/terminus` health indicator for the module's store: down when the store's optional
 * `ping()` fails or takes longer than `timeout`. A store without `ping()` (the memory store) is
 * always up.
 *
 * @example
 * this.health.check([() => this.store.isHealthy('rateLimitStore', { timeout: 500 })]);
 */
@Injectable()
export class ResilienceStoreHealthIndicator {
  private refs: ResilienceRefs | undefined;

  /** Built by Nest's injector (provided by `ResilienceHealthModule`, or listed next to `TerminusModule`). */
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly moduleRef: ModuleRef,
  ) {}

  /** Pings the store; resolves with `{ [key]: { status, store: kind } }` (and `message` when down). */
  async isHealthy<const Key extends string>(key: Key, options: ResilienceStoreHealthOptions = {}): Promise<HealthIndicatorResult<Key>> {
    const indicator = this.health.check(key);
    const store = (this.refs ??= resolveResilience(this.moduleRef, 'ResilienceStoreHealthIndicator')).store as PingableStore;
    if (typeof store.ping !== 'function') return indicator.up({ store: store.kind });
    const timeout = options.timeout ?? 1_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        store.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeout} ms`)), timeout);
        }),
      ]);
      return indicator.up({ store: store.kind });
    } catch (error) {
      return indicator.down({ store: store.kind, message: error instanceof Error ? error.message : String(error) });
    } finally {
      clearTimeout(timer);
    }
  }
}
