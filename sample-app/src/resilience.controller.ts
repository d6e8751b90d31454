import { BadRequestException, Body, Controller, Get, HttpCode, NotFoundException, Param, Patch, Post, Query } from '@nestjs/common';
import {
  BulkheadRegistry,
  ChaosRegistry,
  CircuitBreakerRegistry,
  isResilienceError,
  RateLimiterRegistry,
  ResilienceRegistry,
  type PolicyDefinition,
} from 'nest-resilience';
import { SupplierService } from './supplier.service.js';

/** Read-only introspection: what the registries hold right now. */
@Controller('resilience')
export class ResilienceController {
  constructor(
    private readonly breakers: CircuitBreakerRegistry,
    private readonly bulkheads: BulkheadRegistry,
    private readonly limiters: RateLimiterRegistry,
    private readonly policies: ResilienceRegistry,
    private readonly supplier: SupplierService,
  ) {}

  @Get()
  snapshot() {
    return {
      breakers: this.breakers.list(),
      bulkheads: this.bulkheads.list(),
      rateLimiters: this.limiters.list(),
      policies: this.policies.list(),
      supplier: this.supplier.stats(),
    };
  }
}

/**
 * Operations on the live instances. Opt-in (`ADMIN=1`): an endpoint that opens circuits does not
 * belong on a public port.
 */
@Controller('resilience')
export class ResilienceAdminController {
  constructor(
    private readonly breakers: CircuitBreakerRegistry,
    private readonly limiters: RateLimiterRegistry,
    private readonly policies: ResilienceRegistry,
    private readonly chaos: ChaosRegistry,
  ) {}

  /** Starts injecting a chaos policy's faults (the `supplier` policy's: every supplier call fails). */
  @Post('chaos/:name/enable')
  @HttpCode(200)
  enableChaos(@Param('name') name: string) {
    const chaos = known(() => this.chaos.get(name));
    this.chaos.enable(name);
    return { name, enabled: chaos.enabled, ...chaos.stats() };
  }

  /** Stops injecting faults. */
  @Post('chaos/:name/disable')
  @HttpCode(200)
  disableChaos(@Param('name') name: string) {
    const chaos = known(() => this.chaos.get(name));
    this.chaos.disable(name);
    return { name, enabled: chaos.enabled, ...chaos.stats() };
  }

  /** Opens a breaker until it is reset: every call through it is refused. */
  @Post('breakers/:name/open')
  @HttpCode(200)
  open(@Param('name') name: string) {
    const breaker = known(() => this.breakers.get(name));
    breaker.forceOpen();
    return { name, ...breaker.stats() };
  }

  /** Closes a breaker with an empty window. */
  @Post('breakers/:name/reset')
  @HttpCode(200)
  reset(@Param('name') name: string) {
    const breaker = known(() => this.breakers.get(name));
    breaker.reset();
    return { name, ...breaker.stats() };
  }

  /** Gives one client of a rate limiter a full budget again (`?key=` an IP, or the key function's value). */
  @Post('rate-limiters/:name/reset')
  @HttpCode(200)
  async resetLimit(@Param('name') name: string, @Query('key') key?: string) {
    if (key === undefined || key === '') throw new BadRequestException('?key= is required: an IP address, or what the key function returns');
    await known(() => this.limiters.get(name)).reset(key);
    return { name, key, reset: true };
  }

  /** Changes a named policy from the next call on, e.g. `{"retry":{"maxAttempts":5}}`. */
  @Patch('policies/:name')
  update(@Param('name') name: string, @Body() changes: Partial<PolicyDefinition> | undefined) {
    known(() => this.policies.get(name));
    try {
      return { name, ...this.policies.update(name, changes ?? {}) };
    } catch (error) {
      if (isResilienceError(error)) throw new BadRequestException(error.message);
      throw error;
    }
  }
}

/** A registry lookup; an unknown name is a 404 carrying the registry's message, which lists the known names. */
function known<T>(lookup: () => T): T {
  try {
    return lookup();
  } catch (error) {
    throw new NotFoundException((error as Error).message);
  }
}
