import { createHash } from 'node:crypto';

const SAFE_KEY_PART = /^[A-Za-z0-9._:/-]{1,64}$/;

/**
 * Makes a user-supplied value safe to use inside a store key: short values made of safe
 * characters pass as they are; anything else (long, or holding `{`, `}`, `*`, spaces, ...) is
 * replaced by a hash, so keys stay bounded in length, cannot collide with our separators and
 * cannot change a Redis Cluster hash slot.
 */
export function safeKeyPart(value: string): string {
  if (SAFE_KEY_PART.test(value)) return value;
  return `#${createHash('sha256').update(value).digest('base64url').slice(0, 22)}`;
}
