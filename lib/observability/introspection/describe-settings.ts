const MAX_DEPTH = 6;

/**
 * Settings as plain JSON: functions become `"[function name]"`, error classes in matcher lists
 * `"[class Name]"`, regular expressions their source; cycles and deep nesting are cut.
 */
export function describeSettings(value: unknown, depth = 0, seen: Set<object> = new Set()): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint' || typeof value === 'symbol') return value.toString();
  if (value === undefined) return undefined;
  if (typeof value === 'function') {
    const isClass = /^class[\s{]/.test(Function.prototype.toString.call(value));
    return `[${isClass ? 'class' : 'function'}${value.name ? ` ${value.name}` : ''}]`;
  }
  if (value instanceof RegExp) return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (depth >= MAX_DEPTH || seen.has(value as object)) return '[…]';
  seen.add(value as object);
  try {
    if (Array.isArray(value)) return value.map((item) => describeSettings(item, depth + 1, seen) ?? null);
    const result: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      const described = describeSettings(item, depth + 1, seen);
      if (described !== undefined) result[key] = described;
    }
    return result;
  } finally {
    seen.delete(value as object);
  }
}
