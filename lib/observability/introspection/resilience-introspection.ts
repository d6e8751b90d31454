import {
  BadRequestException,
  Body,
  Controller,
  ForbiddenException,
  Get,
  HttpCode,
  Inject,
  Logger,
  Module,
  NotFoundException,
  Param,
  Post,
  UseGuards,
  type CanActivate,
  type DynamicModule,
  type ModuleMetadata,
  type OnModuleInit,
  type Type,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { resolveResilience, type ResilienceRefs } from '../shared/resilience-refs.js';
import { describeSettings } from './describe-settings.js';

/** Options of `ResilienceIntrospectionModule.register`. */
export interface ResilienceIntrospectionOptions {
  /** Where the endpoints are mounted (under the application's global prefix, if any). @default 'resilience' */
  path?: string;
  /**
   * Guards in front of every endpoint: your own admin guard. The module warns at bootstrap when
   * there is none, since the endpoints show the application's settings to anyone.
   * @default []
   */
  guards?: Array<Type<CanActivate> | CanActivate>;
  /**
   * Enables the write endpoints (force open, disable and reset a breaker, reset a rate-limit key).
   * When false they answer 403. @default false
   */
  allowWrites?: boolean;
  /** Modules the guards need (their dependencies). */
  imports?: ModuleMetadata['imports'];
}

/** A breaker as the endpoints show it. */
export interface CircuitBreakerView {
  /** The breaker's name: a policy name, or `Class.method`. */
  name: string;
  /** `CLOSED`, `OPEN`, `HALF_OPEN`, `FORCED_OPEN` or `DISABLED`. */
  state: string;
  /** The resolved options as JSON (functions as `"[function name]"`, classes as `"[class Name]"`). */
  settings: unknown;
  [stat: string]: unknown;
}

const RESILIENCE_INTROSPECTION_OPTIONS = Symbol('nest-resilience:introspection-options');

/**
 * Read-only views of every policy (states, counters, settings) and opt-in operations on them, as
 * HTTP endpoints for operators, in the spirit of Spring Boot's actuator endpoints for
 * Resilience4j. Off unless you import it; mount it behind your own guard.
 *
 * | method and path | answers |
 * |---|---|
 * | `GET /resilience` | everything below in one object |
 * | `GET /resilience/circuit-breakers[/:name]` | state, window counters and settings |
 * | `GET /resilience/bulkheads[/:name]` | active, queued, rejected… and settings |
 * | `GET /resilience/rate-limiters[/:name]` | limits and admitted / rejected counters |
 * | `GET /resilience/policies[/:name]` | the named policies' settings |
 * | `POST /resilience/circuit-breakers/:name/force-open`, `/disable`, `/reset` | the breaker after the change (`allowWrites`) |
 * | `POST /resilience/rate-limiters/:name/reset` with `{ "key": "…" }` | forgets one client's usage (`allowWrites`) |
 *
 * @example
 * ResilienceIntrospectionModule.register({ path: 'admin/resilience', guards: [AdminGuard], allowWrites: true })
 */
@Module({})
export class ResilienceIntrospectionModule {
  /** Mounts the endpoints with these options. */
  static register(options: ResilienceIntrospectionOptions = {}): DynamicModule {
    return {
      module: ResilienceIntrospectionModule,
      imports: options.imports ?? [],
      providers: [{ provide: RESILIENCE_INTROSPECTION_OPTIONS, useValue: options }],
      controllers: [introspectionController(options)],
    };
  }
}

function introspectionController(options: ResilienceIntrospectionOptions): Type<unknown> {
  const guards = options.guards ?? [];

  @Controller(options.path ?? 'resilience')
  @UseGuards(...guards)
  class ResilienceIntrospectionController implements OnModuleInit {
    private refs: ResilienceRefs | undefined;

    constructor(
      private readonly moduleRef: ModuleRef,
      @Inject(RESILIENCE_INTROSPECTION_OPTIONS) private readonly settings: ResilienceIntrospectionOptions,
    ) {}

    onModuleInit(): void {
      this.refs = resolveResilience(this.moduleRef, 'ResilienceIntrospectionModule');
      if (guards.length === 0) {
        new Logger('ResilienceIntrospectionModule').warn(
          `The endpoints under /${options.path ?? 'resilience'} have no guard: anyone who reaches the server can read${this.settings.allowWrites ? ' and change' : ''} the policies. Pass guards: [YourAdminGuard].`,
        );
      }
    }

    @Get()
    overview(): Record<string, unknown> {
      return {
        circuitBreakers: this.breakers(),
        bulkheads: this.bulkheads(),
        rateLimiters: this.rateLimiters(),
        policies: this.policies(),
        store: { kind: this.resilience.store.kind },
        writes: this.settings.allowWrites === true,
      };
    }

    @Get('circuit-breakers')
    breakers(): CircuitBreakerView[] {
      return this.resilience.breakers.names().map((name) => this.breaker(name));
    }

    @Get('circuit-breakers/:name')
    breaker(@Param('name') name: string): CircuitBreakerView {
      const registry = this.resilience.breakers;
      if (!registry.has(name)) throw notFound('circuit breaker', name, registry.names());
      const breaker = registry.get(name);
      return { name, ...breaker.stats(), settings: settingsOf(breaker) };
    }

    @Post('circuit-breakers/:name/force-open')
    @HttpCode(200)
    async forceOpen(@Param('name') name: string): Promise<CircuitBreakerView> {
      return this.operate(name, (breaker) => breaker.forceOpen());
    }

    @Post('circuit-breakers/:name/disable')
    @HttpCode(200)
    async disable(@Param('name') name: string): Promise<CircuitBreakerView> {
      return this.operate(name, (breaker) => breaker.disable());
    }

    @Post('circuit-breakers/:name/reset')
    @HttpCode(200)
    async reset(@Param('name') name: string): Promise<CircuitBreakerView> {
      return this.operate(name, (breaker) => breaker.reset());
    }

    @Get('bulkheads')
    bulkheads(): Array<Record<string, unknown>> {
      return this.resilience.bulkheads.names().map((name) => this.bulkhead(name));
    }

    @Get('bulkheads/:name')
    bulkhead(@Param('name') name: string): Record<string, unknown> {
      const registry = this.resilience.bulkheads;
      if (!registry.has(name)) throw notFound('bulkhead', name, registry.names());
      const bulkhead = registry.get(name);
      return { name, ...bulkhead.stats(), settings: settingsOf(bulkhead) };
    }

    @Get('rate-limiters')
    rateLimiters(): unknown[] {
      return this.resilience.limiters.list();
    }

    @Get('rate-limiters/:name')
    rateLimiter(@Param('name') name: string): unknown {
      const found = this.resilience.limiters.list().find((limiter) => limiter.name === name);
      if (found === undefined) throw notFound('rate limiter', name, this.resilience.limiters.names());
      return found;
    }

    @Post('rate-limiters/:name/reset')
    @HttpCode(200)
    async resetKey(@Param('name') name: string, @Body() body: unknown): Promise<{ name: string; key: string; reset: true }> {
      this.assertWritable();
      const key = (body as { key?: unknown } | undefined)?.key;
      if (typeof key !== 'string' || key === '') throw new BadRequestException('Send the client key to reset as JSON: { "key": "203.0.113.7" } (an IP address, a user id, or what your key function returns).');
      const registry = this.resilience.limiters;
      if (!registry.has(name)) throw notFound('rate limiter', name, registry.names());
      await registry.reset(name, key);
      return { name, key, reset: true };
    }

    @Get('policies')
    policies(): unknown[] {
      return this.resilience.policies.list().map((policy) => describeSettings(policy));
    }

    @Get('policies/:name')
    policy(@Param('name') name: string): unknown {
      const found = this.resilience.policies.list().find((policy) => policy.name === name);
      if (found === undefined) throw notFound('policy', name, this.resilience.policies.list().map((policy) => policy.name));
      return describeSettings(found);
    }

    private get resilience(): ResilienceRefs {
      return (this.refs ??= resolveResilience(this.moduleRef, 'ResilienceIntrospectionModule'));
    }

    private async operate(name: string, change: (breaker: ReturnType<ResilienceRefs['breakers']['get']>) => unknown): Promise<CircuitBreakerView> {
      this.assertWritable();
      const registry = this.resilience.breakers;
      if (!registry.has(name)) throw notFound('circuit breaker', name, registry.names());
      await change(registry.get(name));
      return this.breaker(name);
    }

    private assertWritable(): void {
      if (this.settings.allowWrites !== true) {
        throw new ForbiddenException('The write endpoints of nest-resilience are disabled: register ResilienceIntrospectionModule with allowWrites: true to enable them.');
      }
    }
  }
  return ResilienceIntrospectionController;
}

/** An instance's resolved options (engines expose them as `options`), without its name. */
function settingsOf(instance: object): unknown {
  const options = (instance as { options?: unknown }).options;
  if (typeof options !== 'object' || options === null) return {};
  const { name: _name, ...settings } = options as Record<string, unknown>;
  return describeSettings(settings);
}

function notFound(kind: string, name: string, known: string[]): NotFoundException {
  return new NotFoundException(`No ${kind} named "${name}"${known.length ? `; known: ${known.join(', ')}` : ''}`);
}
