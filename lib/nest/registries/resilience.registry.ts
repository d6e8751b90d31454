import { Injectable } from '@nestjs/common';
import type { PolicyDefinition } from '../resilience.options.js';
import { ResilienceService } from '../resilience.service.js';
import { registryMessages } from './registry.messages.js';

/**
 * The named policies: read them, and change one at run time. An update is validated first (an
 * invalid one throws and changes nothing) and takes effect for the next call of every handler
 * using the policy; a policy's breaker and bulkhead are rebuilt, so their state starts afresh.
 */
@Injectable()
export class ResilienceRegistry {
  /** Built by Nest's injector; inject the registry wherever the module is visible. */
  constructor(private readonly resilience: ResilienceService) {}

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
    this.resilience.definePolicy(name, next as PolicyDefinition, `ResilienceRegistry.update("${name}")`);
    return next as PolicyDefinition;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}
