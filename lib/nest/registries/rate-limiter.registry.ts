import { Injectable } from '@nestjs/common';
import type { HandlerLimiter } from '../enhancers/handler-limiter.js';
import { NamedRegistry } from './named-registry.js';

/** Limits and counters of one rate limiter. */
export interface RateLimiterInfo {
  /** `Class.method`, or `global` for the module's globalRateLimit. */
  name: string;
  /** Each limit (one per tier built so far, for limits that depend on the caller). */
  limits: Array<{ name: string; limit: number; windowMs: number; algorithm: string }>;
  /** Requests admitted since bootstrap (shadow mode included). */
  admitted: number;
  /** Requests refused since bootstrap (in shadow mode: that would have been refused). */
  rejected: number;
}

/**
 * The rate limiters of the application, one per decorated handler (`Class.method`) plus
 * `global` for the module's `globalRateLimit`.
 */
@Injectable()
export class RateLimiterRegistry extends NamedRegistry<HandlerLimiter> {
  protected readonly kind = 'rate limiter';

  /** Every limiter with its limits and its admitted / rejected counters. */
  list(): RateLimiterInfo[] {
    return [...this.items].map(([name, limiter]) => ({ name, ...limiter.describe() }));
  }

  /**
   * Forgets one client's usage of a limiter, so its next request starts with a full budget.
   * @param key the client as the limiter counts it: an IP address, a user id, or what your key function returns.
   */
  reset(name: string, key: string): Promise<void> {
    return this.get(name).reset(key);
  }
}
