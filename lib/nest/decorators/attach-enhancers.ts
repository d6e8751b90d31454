import { GUARDS_METADATA, INTERCEPTORS_METADATA } from '../resilience.constants.js';

/**
 * Puts `enhancer` in a handler's `@UseGuards` / `@UseInterceptors` metadata, at most once. On a
 * class it goes on every method of the class rather than on the class itself, so a handler with
 * decorators on both its class and itself still gets exactly one of ours (class decorators run
 * after method decorators, and Nest would run a class-level and a method-level copy).
 */
export function attachEnhancer(kind: 'guard' | 'interceptor', enhancer: Function): ClassDecorator & MethodDecorator {
  const key = kind === 'guard' ? GUARDS_METADATA : INTERCEPTORS_METADATA;
  return ((target: object, propertyKey?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (descriptor !== undefined) {
      addOnce(key, enhancer, descriptor.value);
      return descriptor;
    }
    // Inherited handlers too: a controller extending a base controller routes the base's methods.
    // (Their functions are shared with the base class and its other subclasses; there our
    // enhancers find no decorator for that class and pass straight through.)
    const seen = new Set<string>();
    for (let prototype = (target as Function).prototype as object | null; prototype !== null && prototype !== Object.prototype; prototype = Object.getPrototypeOf(prototype)) {
      for (const name of Object.getOwnPropertyNames(prototype)) {
        if (name === 'constructor' || seen.has(name)) continue;
        seen.add(name);
        const method = Object.getOwnPropertyDescriptor(prototype, name)?.value;
        if (typeof method === 'function') addOnce(key, enhancer, method);
      }
    }
    return undefined;
  }) as ClassDecorator & MethodDecorator;
}

function addOnce(key: string, enhancer: Function, method: unknown): void {
  if (typeof method !== 'function') return;
  const existing: unknown[] = Reflect.getMetadata(key, method) ?? [];
  if (existing.includes(enhancer)) return;
  Reflect.defineMetadata(key, [...existing, enhancer], method);
}
