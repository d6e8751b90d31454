import { Injectable } from '@nestjs/common';
import { InvalidOptionError } from '../../core/errors.js';
import type { Disposable } from '../../core/events.js';
import type { PolicyDefinition } from '../resilience.options.js';
import { ResilienceService } from '../resilience.service.js';
import { registryMessages } from './registry.messages.js';

/**
 * The named policies: read them, and change one at run time. An update is validated first (an
 * invalid one throws and changes nothing) and takes effect for the next call of every handler
 * using the policy. The policy's breaker, bulkhead and chaos policy are rebuilt only when their
 * own settings change (their state then starts afresh); an update that changes only the timeout
 * leaves an open circuit open. An update may not drop a pattern a handler names the policy for.
 */
@Injectable()
export class ResilienceRegistry {
  private hooks: readonly PolicyUpdateHook[] = [];

  /** Built by Nest's injector; inject the registry wherever the module is visible. */
  constructor(private readonly resilience: ResilienceService) {}

  /**
   * Registers a hook told of every change made through {@link update} (the live configuration
   * publishes them to the fleet). Changes made through {@link apply} are not reported.
   */
  addUpdateHook(hook: PolicyUpdateHook): Disposable {
    this.hooks = [...this.hooks, hook];
    return {
      dispose: () => {
        this.hooks = this.hooks.filter((candidate) => candidate !== hook);
      },
    };
  }

  /**
   * The named policy as configured, after any run-time update.
   * @throws Error naming the known policies when there is none of that name.
   */
  get(name: string): PolicyDefinition {
    const definition = this.resilience.policyDefinitions().get(name);
    if (definition === undefined) throw new Error(registryMessages.notFound('policy', name, [...this.resilience.policyDefinitions().keys()]));
    return definition;
  }

  /** Every named policy with its settings. */
  list(): Array<{ name: string } & PolicyDefinition> {
    return [...this.resilience.policyDefinitions()].map(([name, definition]) => ({ name, ...definition }));
  }

  /**
   * Merges `changes` into a named policy, pattern by pattern (`{ retry: { maxAttempts: 5 } }`
   * keeps the policy's other retry settings), and applies it from the next call on.
   * @throws InvalidOptionError naming the option when the result is invalid; nothing changes then.
   */
  update(name: string, changes: Partial<PolicyDefinition>): PolicyDefinition {
    const current = this.get(name);
    const next: Record<string, unknown> = { ...current };
    for (const [kind, value] of Object.entries(changes)) {
      const previous = (current as Record<string, unknown>)[kind];
      next[kind] = isPlainObject(previous) && isPlainObject(value) ? { ...previous, ...value } : value;
    }
    const definition = next as PolicyDefinition;
    const where = `ResilienceRegistry.update("${name}")`;
    const hooks = this.hooks;
    if (hooks.length > 0) {
      // Every check, ours and the hooks', runs before anything changes.
      this.resilience.definePolicy(name, definition, where, { validateOnly: true });
      for (const hook of hooks) hook.check?.(name, definition, where);
    }
    this.resilience.definePolicy(name, definition, where);
    for (const hook of hooks) hook.updated?.(name, definition);
    return definition;
  }

  /**
   * Replaces a named policy's whole definition, validated first, without telling the update hooks:
   * how a change published by another instance is applied.
   * @param options.origin who made the change, for error messages.
   * @throws InvalidOptionError naming the option when the definition is invalid, or `policy` when
   *   no policy has that name (policies are declared in `forRoot`; this never creates one); nothing changes then.
   */
  apply(name: string, definition: PolicyDefinition, { origin }: { origin: string }): void {
    const where = `live configuration of policy "${name}" from ${origin}`;
    const names = [...this.resilience.policyDefinitions().keys()];
    if (!names.includes(name)) throw new InvalidOptionError('policy', name, names.length ? `one of the named policies: ${names.join(', ')}` : 'a policy declared in ResilienceModule.forRoot({ policies }) (none are)', where);
    this.resilience.definePolicy(name, definition, where);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}

/** Told of the changes made through {@link ResilienceRegistry.update}; see `addUpdateHook`. */
export interface PolicyUpdateHook {
  /**
   * Called with the full new definition once it passed validation, before it is applied; throw
   * (an `InvalidOptionError`) to refuse the update, which then changes nothing.
   */
  check?(name: string, definition: PolicyDefinition, where: string): void;
  /** Called once the new definition is in force. */
  updated?(name: string, definition: PolicyDefinition): void;
}
