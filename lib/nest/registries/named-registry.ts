import { registryMessages } from './registry.messages.js';

/** A map of live instances by name, with the lookup errors every registry shares. */
export abstract class NamedRegistry<T> {
  protected readonly items = new Map<string, T>();

  /** What the registry holds, for error messages (`'circuit breaker'`). */
  protected abstract readonly kind: string;

  /**
   * The instance registered under `name` (a policy name, `Class.method`, or `global`).
   * @throws Error naming the known instances when there is none of that name.
   */
  get(name: string): T {
    const item = this.items.get(name);
    if (item === undefined) throw new Error(registryMessages.notFound(this.kind, name, [...this.items.keys()]));
    return item;
  }

  /** Whether an instance of that name exists. */
  has(name: string): boolean {
    return this.items.has(name);
  }

  /** The names of every instance. */
  names(): string[] {
    return [...this.items.keys()];
  }

  /** Adds or replaces an instance (the module does this). */
  register(name: string, item: T): void {
    this.items.set(name, item);
  }

  /** Every instance. */
  all(): IterableIterator<T> {
    return this.items.values();
  }
}
