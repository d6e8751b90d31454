import { Injectable } from '@nestjs/common';
import type { HandlerLimiter } from '../enhancers/handler-limiter.js';
import { registryMessages } from './registry.messages.js';

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
export class RateLimiterRegistry {
  private readonly limiters = new Map<string, HandlerLimiter>();

  /** @throws Error naming the known limiters when there is none of that name. */
  get(name: string): HandlerLimiter {
    const limiter = this.limiters.get(name);
    if (limiter === undefined) throw new Error(registryMessages.notFound('rate limiter', name, [...this.limiters.keys()]));
    return limiter;
  }

  /** Whether a limiter of that name exists. */
  has(name: string): boolean {
    return this.limiters.has(name);
  }

  /** Every limiter with its limits and its admitted / rejected counters. */
  list(): RateLimiterInfo[] {
    return [...this.limiters].map(([name, limiter]) => ({ name, ...limiter.describe() }));
  }

  /**
   * Forgets one client's usage of a limiter, so its next request starts with a full budget.
   * @param key the client as the limiter counts it: an IP address, a user id, or what your key function returns.
   */
  reset(name: string, key: string): Promise<void> {
    return this.get(name).reset(key);
  }

  /** Adds or replaces a limiter (the module does this). */
  register(name: string, limiter: HandlerLimiter): void {
    this.limiters.set(name, limiter);
  }
}
