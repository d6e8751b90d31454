import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { ResilienceService } from '../resilience.service.js';

/**
 * Enforces `@RateLimit` on the handlers that carry it (the decorator attaches it), before pipes
 * and the handler run, so a refused request costs almost nothing. Synchronous with the memory
 * store.
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  /** Built by Nest's injector, which needs the module (`isGlobal`, or imported) where the handler's class is declared. */
  constructor(private readonly resilience: ResilienceService) {}

  /**
   * Decides the request against the handler's limits and sets the rate-limit headers; a refusal
   * throws the mapped error (429 in HTTP, 503 when the store fails closed).
   */
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    const limiter = this.resilience.planFor(context.getClass(), context.getHandler()).limiter;
    return limiter === undefined ? true : limiter.check(context);
  }
}

/** The module's `globalRateLimit`: one budget per client across every route not marked `@SkipRateLimit()`. */
@Injectable()
export class GlobalRateLimitGuard implements CanActivate {
  /** Built by Nest's injector (registered as `APP_GUARD` when `globalRateLimit` is set). */
  constructor(private readonly resilience: ResilienceService) {}

  /** Decides the request against `globalRateLimit`, unless the handler or its class is marked `@SkipRateLimit()`. */
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    if (this.resilience.planFor(context.getClass(), context.getHandler()).skipRateLimit) return true;
    const limiter = this.resilience.globalLimit();
    return limiter === undefined ? true : limiter.check(context);
  }
}
