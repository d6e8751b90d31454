import { Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { InvalidOptionError } from '../../core/errors.js';
import { hasResilienceMetadata, readMethodMetadata } from '../metadata.accessor.js';
import { ResilienceService } from '../resilience.service.js';

interface InstanceWrapperLike {
  instance?: unknown;
  metatype?: unknown;
  isDependencyTreeStatic(): boolean;
  readonly isTransient?: boolean;
}

/**
 * At bootstrap: builds and validates the plan of every decorated controller handler (so bad
 * configuration fails at start, naming the class, method, decorator and option) and wraps every
 * decorated provider method once, keeping `this`, its name and its metadata. Routes are bound
 * before `onModuleInit`, so wrapping here never touches a controller's route.
 */
@Injectable()
export class ResilienceExplorer implements OnModuleInit {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly resilience: ResilienceService,
  ) {}

  async onModuleInit(): Promise<void> {
    await this.loadTransports();
    for (const wrapper of this.discovery.getControllers() as InstanceWrapperLike[]) this.exploreController(wrapper);
    for (const wrapper of this.discovery.getProviders() as InstanceWrapperLike[]) this.exploreProvider(wrapper);
    this.resilience.globalLimit();
  }

  private exploreController(wrapper: InstanceWrapperLike): void {
    const classRef = wrapper.metatype;
    if (typeof classRef !== 'function' || classRef.prototype === undefined) return;
    const instance = wrapper.isDependencyTreeStatic() && !wrapper.isTransient ? (wrapper.instance as object | undefined) : undefined;
    for (const name of this.scanner.getAllMethodNames(classRef.prototype)) {
      const method = (classRef.prototype as Record<string, unknown>)[name];
      if (typeof method !== 'function' || !hasResilienceMetadata(readMethodMetadata(classRef, method))) continue;
      this.resilience.compile(classRef, method, name, 'controller', instance);
    }
  }

  private exploreProvider(wrapper: InstanceWrapperLike): void {
    const classRef = wrapper.metatype;
    const instance = wrapper.instance as Record<string, unknown> | undefined;
    if (typeof classRef !== 'function' || classRef.prototype === undefined || instance === undefined || instance === null) return;
    if (typeof instance !== 'object' || !(instance instanceof classRef)) return;
    for (const name of this.scanner.getAllMethodNames(Object.getPrototypeOf(instance))) {
      const method = instance[name];
      if (typeof method !== 'function' || !hasResilienceMetadata(readMethodMetadata(classRef, method))) continue;
      if (!wrapper.isDependencyTreeStatic() || wrapper.isTransient) {
        throw new InvalidOptionError(
          'scope',
          wrapper.isTransient ? 'TRANSIENT' : 'REQUEST',
          'a singleton provider: resilience decorators on provider methods keep state (breakers, bulkheads) that a request-scoped or transient instance would lose',
          `${classRef.name}@${name}`,
        );
      }
      const plan = this.resilience.compile(classRef, method, name, 'provider', instance);
      const pipeline = plan.pipeline;
      if (pipeline === undefined) continue;
      const original = method as (...args: unknown[]) => unknown;
      const wrapped = {
        // A named function expression keeps `name` for stack traces and logs.
        [name](this: unknown, ...args: unknown[]): Promise<unknown> {
          return pipeline.execute(() => original.apply(this, args), undefined, { args });
        },
      }[name]!;
      copyMetadata(original, wrapped);
      instance[name] = wrapped;
    }
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

/** Copies every metadata entry of a method onto its wrapper, so other libraries still find theirs. */
function copyMetadata(source: Function, target: Function): void {
  for (const key of Reflect.getMetadataKeys(source)) Reflect.defineMetadata(key, Reflect.getMetadata(key, source), target);
}
