import { Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { InvalidOptionError } from '../../core/errors.js';
import { hasResilienceMetadata, readMethodMetadata, type MethodMetadata } from '../metadata.accessor.js';
import { ResilienceService, type HandlerPlan } from '../resilience.service.js';

/** What the explorer reads of Nest's `Module` (internal API, read defensively). */
interface ModuleLike {
  readonly isGlobal?: boolean;
  readonly metatype?: unknown;
  readonly imports?: ReadonlySet<ModuleLike>;
  readonly exports?: ReadonlySet<unknown>;
  readonly providers?: ReadonlyMap<unknown, unknown>;
}

/** What the explorer reads of Nest's `InstanceWrapper`. */
interface InstanceWrapperLike {
  readonly instance?: unknown;
  readonly metatype?: unknown;
  readonly host?: ModuleLike;
  readonly isTransient?: boolean;
  isDependencyTreeStatic(): boolean;
}

/** Set on every wrapper we install: the function it wraps. A method carrying it is never wrapped again. */
const WRAPPED = Symbol('nest-resilience:wrapped');

// Classes whose methods Nest itself runs through guards and interceptors, like controllers:
// WebSocket gateways and GraphQL resolvers (recognised by their metadata keys, so neither
// `@nestjs/websockets` nor `@nestjs/graphql` is imported).
const GATEWAY_METADATA = 'websockets:is_gateway';
const MESSAGE_MAPPING_METADATA = 'websockets:message_mapping';
const GRAPHQL_RESOLVER_METADATA = ['graphql:resolver_type', 'graphql:resolve_property', 'graphql:resolve_reference'];

/**
 * Lifecycle hooks Nest calls on providers. A class-level decorator does not apply to them (a
 * rate limit or a breaker around `onModuleDestroy` would be a surprise); a decorator on the hook
 * itself still does.
 */
const LIFECYCLE_HOOKS: ReadonlySet<string> = new Set([
  'onModuleInit',
  'onApplicationBootstrap',
  'onModuleDestroy',
  'beforeApplicationShutdown',
  'onApplicationShutdown',
]);

type Owner = 'mine' | 'other' | 'unclaimed';

/**
 * At bootstrap: builds and validates the plan of every decorated controller handler (HTTP, RPC,
 * and the message handlers of gateways and resolvers, which Nest runs through our guard and
 * interceptor), so bad configuration fails at start naming the class, method, decorator and
 * option; and wraps every decorated method of a singleton provider once, keeping `this`, its
 * `name`, its `length` and its metadata. Routes and message handlers are bound before
 * `onModuleInit`, from the prototype, so wrapping instances here never double-wraps a handler.
 *
 * With several `ResilienceModule` instances in one application (imported with different options
 * in different modules), each handles the classes whose module resolves its services, the way
 * Nest's injector would; a provider whose module reaches none is wrapped by the first explorer
 * that finds it, and never twice.
 *
 * Request-scoped and transient providers with decorators are refused at bootstrap: their state
 * (breakers, bulkheads, limits) would live and die with each instance.
 */
@Injectable()
export class ResilienceExplorer implements OnModuleInit {
  private explored = false;

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly resilience: ResilienceService,
  ) {}

  async onModuleInit(): Promise<void> {
    // Hooks run again when one container backs two contexts (`moduleRef.init()` then `app.init()`).
    if (this.explored) return;
    this.explored = true;
    await this.loadTransports();
    const providers = this.discovery.getProviders() as InstanceWrapperLike[];
    const own = providers.find((wrapper) => wrapper.instance === this.resilience)?.host;
    for (const wrapper of this.discovery.getControllers() as InstanceWrapperLike[]) {
      if (this.ownerOf(wrapper, own) !== 'other') this.exploreController(wrapper);
    }
    for (const wrapper of providers) this.exploreProvider(wrapper, own);
    this.resilience.globalLimit();
  }

  private exploreController(wrapper: InstanceWrapperLike): void {
    const classRef = wrapper.metatype;
    if (typeof classRef !== 'function' || classRef.prototype === undefined) return;
    const instance = isSingleton(wrapper) ? (wrapper.instance as object | undefined) : undefined;
    for (const name of this.scanner.getAllMethodNames(classRef.prototype)) {
      const method = methodOf(classRef.prototype as object, name);
      if (method === undefined || !hasResilienceMetadata(readMethodMetadata(classRef, method))) continue;
      this.resilience.compile(classRef, method, name, 'controller', instance);
    }
  }

  private exploreProvider(wrapper: InstanceWrapperLike, own: ModuleLike | undefined): void {
    const singleton = isSingleton(wrapper);
    // A request-scoped or transient provider has no instance yet: its class tells what it carries.
    const found = singleton ? classOfInstance(wrapper.instance) : classOfMetatype(wrapper.metatype);
    if (found === undefined) return;
    const { instance, prototype, classRef } = found;
    let owner: Owner | undefined;
    let handlerHost: boolean | undefined;
    for (const name of this.scanner.getAllMethodNames(prototype)) {
      const method = methodOf(prototype, name);
      if (method === undefined) continue;
      const metadata = readMethodMetadata(classRef, method);
      if (!hasResilienceMetadata(metadata)) continue;
      if (LIFECYCLE_HOOKS.has(name) && !hasResilienceMetadata({ method: metadata.method, class: {} })) continue;
      owner ??= this.ownerOf(wrapper, own);
      if (owner === 'other') return;
      handlerHost ??= isHandlerHost(classRef, prototype, this.scanner);
      if (handlerHost) {
        this.exploreHandlerHostMethod(classRef, method, name, metadata, instance);
        continue;
      }
      if (instance === undefined) {
        throw new InvalidOptionError(
          'scope',
          wrapper.isTransient ? 'TRANSIENT' : 'REQUEST',
          'a singleton provider (the default scope, depending on no request-scoped provider): resilience decorators on provider methods keep state (breakers, bulkheads, limits) that a request-scoped or transient instance would lose; move the decorated method into a singleton provider',
          `${classRef.name}@${name}`,
        );
      }
      this.wrapProviderMethod(classRef, instance, method, name);
    }
  }

  /** A gateway's or resolver's method: Nest runs its handlers through our guard and interceptor, as for a controller. */
  private exploreHandlerHostMethod(classRef: Function, method: Function, name: string, metadata: MethodMetadata, instance: object | undefined): void {
    if (isMessageHandler(method)) {
      this.resilience.compile(classRef, method, name, 'controller', instance);
      return;
    }
    // Class-level decorators apply to the handlers only; on any other method a decorator would do nothing.
    if (!hasResilienceMetadata({ method: metadata.method, class: {} })) return;
    throw new InvalidOptionError(
      'decorator',
      name,
      'a message handler (@SubscribeMessage, @Query, @Mutation, @ResolveField...): the other methods of a gateway or resolver are not wrapped; move the call into a provider and decorate that provider\'s method',
      `${classRef.name}@${name}`,
    );
  }

  private wrapProviderMethod(classRef: Function, instance: object, method: Function, name: string): void {
    const label = `${classRef.name}@${name}`;
    // An own property hides the prototype's method: a wrapper of ours (another explorer, or
    // another token of the same instance, got there first), or a bound copy made in the
    // constructor, which is what callers call and so what we wrap.
    let existing: PropertyDescriptor | undefined;
    try {
      existing = Object.getOwnPropertyDescriptor(instance, name);
    } catch {
      throw new InvalidOptionError('decorator', name, 'a method of an instance that can be inspected (reading its own properties throws: a proxy?)', label);
    }
    let original = method as (...args: unknown[]) => unknown;
    if (existing !== undefined) {
      const value: unknown = existing.value;
      if (typeof value !== 'function') {
        throw new InvalidOptionError('decorator', name, `a method the instance does not hide (it has its own property "${name}", so the decorated method is never called)`, label);
      }
      if ((value as { [WRAPPED]?: unknown })[WRAPPED] !== undefined) return;
      original = value as (...args: unknown[]) => unknown;
    }

    const resilience = this.resilience;
    let plan: HandlerPlan = resilience.compile(classRef, method, name, 'provider', instance);
    const wrapped = {
      // A named function expression keeps `name` for stack traces, logs and other libraries.
      [name](this: unknown, ...args: unknown[]): unknown {
        // A run-time update of a named policy marks the plan stale: rebuild it for this instance.
        if (plan.stale) plan = resilience.compile(classRef, method, name, 'provider', instance);
        const pipeline = plan.pipeline;
        if (pipeline === undefined) return original.apply(this, args);
        // The enclosing call's context (a controller's deadline), else the application's, which shutdown aborts.
        const context = resilience.callContext();
        if (context.aborted) return Promise.reject(context.abortReason);
        return pipeline.execute(() => original.apply(this, args), context, { args });
      },
    }[name]!;
    copyMetadata(method, wrapped);
    Object.defineProperty(wrapped, 'length', { value: original.length });
    Object.defineProperty(wrapped, WRAPPED, { value: original });
    try {
      Object.defineProperty(instance, name, { value: wrapped, writable: true, configurable: true, enumerable: false });
    } catch {
      throw new InvalidOptionError('decorator', name, 'a method of an extensible instance (the provider instance is frozen or sealed, so its method cannot be wrapped)', label);
    }
  }

  /**
   * Whether this explorer's module is the one the class's module resolves `ResilienceService`
   * from (the injector's own lookup: the module itself, then its imports depth first, through
   * re-exports). `'unclaimed'` when it resolves none (a provider of a module that does not import
   * the ResilienceModule).
   */
  private ownerOf(wrapper: InstanceWrapperLike, own: ModuleLike | undefined): Owner {
    const host = wrapper.host;
    if (host === undefined || own === undefined) return 'unclaimed';
    const resolved = host.providers?.has(ResilienceService) ? host : lookupInImports(host, new Set(), false);
    if (resolved === undefined) return 'unclaimed';
    return resolved === own ? 'mine' : 'other';
  }

  private async loadTransports(): Promise<void> {
    const transports = this.resilience.transports;
    // Optional packages: used when the application has them, never required.
    const microservices = await import('@nestjs/microservices').catch(() => undefined);
    if (microservices?.RpcException) transports.RpcException = microservices.RpcException;
    const websockets = await import('@nestjs/websockets').catch(() => undefined);
    if (websockets?.WsException) transports.WsException = websockets.WsException;
  }
}

/** Nest's `lookupComponentInImports` for one token: imports in order, depth first, through re-exports only. */
function lookupInImports(module: ModuleLike, seen: Set<ModuleLike>, traversing: boolean): ModuleLike | undefined {
  for (const related of module.imports ?? []) {
    if (related === undefined || related === null || seen.has(related)) continue;
    if (traversing && !module.exports?.has(related.metatype)) continue;
    seen.add(related);
    if (related.providers?.has(ResilienceService) && related.exports?.has(ResilienceService)) return related;
    const deeper = lookupInImports(related, seen, true);
    if (deeper !== undefined) return deeper;
  }
  return undefined;
}

function isSingleton(wrapper: InstanceWrapperLike): boolean {
  return wrapper.isDependencyTreeStatic() && wrapper.isTransient !== true;
}

/**
 * The class of a provider's instance, whatever made it (a class provider, `useValue`,
 * `useFactory`): plain objects, functions and instances whose prototype cannot be read (a
 * throwing proxy) have none and are left alone.
 */
function classOfInstance(value: unknown): { instance: object; prototype: object; classRef: Function } | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  try {
    const prototype: unknown = Object.getPrototypeOf(value);
    if (prototype === null || typeof prototype !== 'object' || prototype === Object.prototype) return undefined;
    const constructor = Object.getOwnPropertyDescriptor(prototype, 'constructor')?.value as unknown;
    if (typeof constructor !== 'function' || constructor.prototype !== prototype) return undefined;
    return { instance: value, prototype, classRef: constructor };
  } catch {
    return undefined;
  }
}

/** The class of a request-scoped or transient provider (`undefined` for factories). */
function classOfMetatype(metatype: unknown): { instance: undefined; prototype: object; classRef: Function } | undefined {
  if (typeof metatype !== 'function') return undefined;
  const prototype: unknown = metatype.prototype;
  if (prototype === null || typeof prototype !== 'object') return undefined;
  return { instance: undefined, prototype, classRef: metatype };
}

/** The method `name` as defined on the prototype chain (never running a getter). */
function methodOf(prototype: object, name: string): Function | undefined {
  for (let holder: object | null = prototype; holder !== null && holder !== Object.prototype; holder = Object.getPrototypeOf(holder) as object | null) {
    const descriptor = Object.getOwnPropertyDescriptor(holder, name);
    if (descriptor === undefined) continue;
    return typeof descriptor.value === 'function' ? (descriptor.value as Function) : undefined;
  }
  return undefined;
}

/** A WebSocket gateway or a GraphQL resolver: Nest calls its handlers through guards and interceptors. */
function isHandlerHost(classRef: Function, prototype: object, scanner: MetadataScanner): boolean {
  if (Reflect.getMetadata(GATEWAY_METADATA, classRef) === true) return true;
  if (GRAPHQL_RESOLVER_METADATA.some((key) => Reflect.hasMetadata(key, classRef))) return true;
  return scanner.getAllMethodNames(prototype).some((name) => {
    const method = methodOf(prototype, name);
    return method !== undefined && GRAPHQL_RESOLVER_METADATA.some((key) => Reflect.hasMetadata(key, method));
  });
}

function isMessageHandler(method: Function): boolean {
  return Reflect.getMetadata(MESSAGE_MAPPING_METADATA, method) === true || GRAPHQL_RESOLVER_METADATA.some((key) => Reflect.hasMetadata(key, method));
}

/** Copies every metadata entry of a method onto its wrapper, so other libraries still find theirs. */
function copyMetadata(source: Function, target: Function): void {
  for (const key of Reflect.getOwnMetadataKeys(source)) Reflect.defineMetadata(key, Reflect.getOwnMetadata(key, source), target);
}
