import { Injectable } from '@nestjs/common';
import type { ChaosOptions, ChaosPolicy, ChaosStats } from '../../policies/chaos/index.js';
import { NamedRegistry } from './named-registry.js';

/**
 * The live chaos policies of the application: one per named policy, one per class and method with
 * inline options. Switches fault injection at run time, e.g. from an admin endpoint during a
 * rehearsal.
 */
@Injectable()
export class ChaosRegistry extends NamedRegistry<ChaosPolicy> {
  protected readonly kind = 'chaos policy';

  /**
   * Starts injecting faults in the policy of that name, or, without a name, in every chaos
   * policy (all or none: when one refuses, those this call switched on are switched off again).
   * @throws ChaosNotAllowedError in production unless `chaos: { allowInProduction: true }`.
   * @throws Error naming the known policies when there is none of that name.
   */
  enable(name?: string): void {
    if (name !== undefined) {
      this.get(name).enable();
      return;
    }
    const switched: ChaosPolicy[] = [];
    try {
      for (const chaos of this.items.values()) {
        if (chaos.enabled) continue;
        chaos.enable();
        switched.push(chaos);
      }
    } catch (error) {
      for (const chaos of switched) chaos.disable();
      throw error;
    }
  }

  /** Stops injecting faults in the policy of that name, or, without a name, in every chaos policy. */
  disable(name?: string): void {
    if (name !== undefined) {
      this.get(name).disable();
      return;
    }
    for (const chaos of this.items.values()) chaos.disable();
  }

  /**
   * Replaces the faults of the policy of that name; see {@link ChaosPolicy.update}.
   * @throws InvalidOptionError when an option is invalid (nothing changes then).
   */
  update(name: string, options: ChaosOptions): void {
    this.get(name).update(options);
  }

  /** Every chaos policy with whether it is enabled and its counters. */
  list(): Array<{ name: string; enabled: boolean } & ChaosStats> {
    return [...this.items].map(([name, chaos]) => ({ name, enabled: chaos.enabled, ...chaos.stats() }));
  }
}
