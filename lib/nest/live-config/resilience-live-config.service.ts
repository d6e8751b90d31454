import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { InvalidOptionError } from '../../core/errors.js';
import type { Disposable, Event } from '../../core/events.js';
import {
  LiveConfigChannel,
  assertJsonData,
  sameJsonData,
  type LiveConfigAppliedEvent,
  type LiveConfigEntry,
  type LiveConfigOptions,
  type LiveConfigRefusedEvent,
  type LiveConfigStoreErrorEvent,
} from '../../stores/redis/live-config.js';
import { ResilienceRegistry } from '../registries/resilience.registry.js';
import type { PolicyDefinition } from '../resilience.options.js';
import { LIVE_CONFIG_OPTIONS } from './live-config.module-definition.js';

/**
 * The fleet-wide live configuration of the named policies. Every change made through
 * `ResilienceRegistry.update()` (or {@link update}) on any instance is published to Redis and
 * applied by every instance for its next calls; a change published by an operator is validated
 * by every instance, which refuses it (a logged error and `onRefused`) and keeps the previous
 * definition when it is invalid or names no declared policy. Provided by `ResilienceLiveConfigModule`.
 */
@Injectable()
export class ResilienceLiveConfig implements OnModuleInit, OnApplicationBootstrap, OnApplicationShutdown {
  /** The Redis side: versions, hash and channel. */
  readonly channel: LiveConfigChannel;
  private readonly logger = new Logger('ResilienceLiveConfig');
  private registry: ResilienceRegistry | undefined = undefined;
  private hook: Disposable | undefined = undefined;
  private lastPublish: Promise<LiveConfigEntry> | undefined = undefined;

  /** Built by Nest's injector from the module's options. */
  constructor(
    @Inject(LIVE_CONFIG_OPTIONS) options: LiveConfigOptions,
    private readonly moduleRef: ModuleRef,
  ) {
    this.channel = new LiveConfigChannel(options);
    this.channel.onRefused((event) => {
      const message = event.error instanceof Error ? event.error.message : String(event.error);
      const what = event.name === undefined ? 'a live configuration message' : `version ${event.version} of policy "${event.name}" from ${event.origin}`;
      this.logger.error(`Refused ${what}; the previous definition stays in force. ${message}`);
    });
    this.channel.onApplied((event) => {
      if (event.changed) this.logger.log(`Applied version ${event.version} of policy "${event.name}" from ${event.origin}`);
    });
    this.channel.onStoreError((event) => {
      // A failed publication is logged as an error where it is awaited (below).
      if (event.operation === 'publish') return;
      this.logger.warn(`Redis ${event.operation} failed (${event.error instanceof Error ? event.error.message : String(event.error)}); changes missed meanwhile are loaded after the reconnection`);
    });
  }

  /** This instance's identity, the `origin` of what it publishes. */
  get instanceId(): string {
    return this.channel.instanceId;
  }

  /** Each change this instance applied. */
  get onApplied(): Event<LiveConfigAppliedEvent> {
    return this.channel.onApplied;
  }

  /** Each change this instance refused (invalid, unknown policy, unreadable message). */
  get onRefused(): Event<LiveConfigRefusedEvent> {
    return this.channel.onRefused;
  }

  /** Each Redis failure. */
  get onStoreError(): Event<LiveConfigStoreErrorEvent> {
    return this.channel.onStoreError;
  }

  /**
   * `ResilienceRegistry.update()`, then waits until the change is published to the fleet.
   * @throws InvalidOptionError (synchronously checked, nothing changes) when the result is invalid or holds a function.
   * @returns the published entry, with its version; rejects when Redis could not be reached (the change is then in force on this instance only).
   */
  update(name: string, changes: Partial<PolicyDefinition>): Promise<LiveConfigEntry> {
    this.lastPublish = undefined;
    this.resilienceRegistry().update(name, changes);
    return this.lastPublish ?? Promise.reject(new Error(`nest-resilience: the update of policy "${name}" was not published`));
  }

  /** Hooks into the registry, before the application's own `onModuleInit` may update a policy. */
  onModuleInit(): void {
    this.hook = this.resilienceRegistry().addUpdateHook({
      check: (name, definition, where) => {
        try {
          assertJsonData(definition, `policies.${name}`);
        } catch (error) {
          if (error instanceof InvalidOptionError) throw new InvalidOptionError(error.option, error.value, error.expected, where);
          throw error;
        }
      },
      updated: (name, definition) => {
        // Validated by the registry first: an instance refusing it runs another version of the application.
        const published = this.channel.publish(name, definition as Record<string, unknown>, { validated: true });
        published.catch((error: unknown) => {
          this.logger.error(`Policy "${name}" changed on this instance only: publishing it failed (${error instanceof Error ? error.message : String(error)})`);
        });
        this.lastPublish = published;
      },
    });
  }

  /** Loads the fleet's current definitions before the application serves its first request. */
  async onApplicationBootstrap(): Promise<void> {
    const registry = this.resilienceRegistry();
    await this.channel.start((entry) => {
      const current = registry.list().find((policy) => policy.name === entry.name);
      if (current !== undefined) {
        const { name: _name, ...definition } = current;
        if (sameJsonData(definition, entry.definition)) return false;
      }
      registry.apply(entry.name, entry.definition as PolicyDefinition, { origin: entry.origin });
      return true;
    });
  }

  /** Stops following the fleet and closes the connections the channel opened. */
  async onApplicationShutdown(): Promise<void> {
    this.hook?.dispose();
    this.hook = undefined;
    await this.channel.close();
  }

  private resilienceRegistry(): ResilienceRegistry {
    // Found wherever ResilienceModule is imported: the live configuration needs no import of it.
    this.registry ??= this.moduleRef.get(ResilienceRegistry, { strict: false }) ?? undefined;
    if (this.registry === undefined) throw new Error('nest-resilience: ResilienceLiveConfigModule needs ResilienceModule (ResilienceModule.forRoot) in the application');
    return this.registry;
  }
}
