import { createHash } from 'node:crypto';
import { ALGORITHMS, EMPTY_STATE, type Verdict } from '../../../../lib/policies/rate-limit/algorithms.js';
import type { LimitState, RateLimitAlgorithm, RateLimitDecision } from '../../../../lib/policies/rate-limit/rate-limit.options.js';
import type { MemoryStoreStats } from '../../../../lib/stores/memory/memory.store.js';
import type { ConsumeMode, LimitSpec, ResilienceStore } from '../../../../lib/stores/store.interface.js';

/** Keys longer than this are stored as a hash, so a key's memory does not depend on its length. */
const MAX_KEY_LENGTH = 64;

/** The state of one limit of one key; a key's limits form a chain starting at its entry. */
class Slot {
  next: Slot | undefined = undefined;

  constructor(
    public name: string,
    public algorithm: RateLimitAlgorithm,
    public state: number[],
  ) {}
}

/**
 * One key: the state of its first limit (an entry is its own first slot, one object less to
 * reach on every decision), the chain of the others, when all are full again, and its place in
 * the LRU list.
 */
class Entry extends Slot {
  /** Absolute time at which every limit of the key is full again: from then on the entry equals an absent one. */
  fullAt = 0;
  older: Entry | undefined = undefined;
  newer: Entry | undefined = undefined;

  constructor(
    public id: string,
    spec: LimitSpec,
  ) {
    super(spec.name, spec.algorithm, freshState(spec.algorithm));
  }
}

/**
 * The memory store as it was with one object per key and per limit (an entry and its slots),
 * kept as a model: the store keeping its state in typed arrays must decide, count and evict
 * exactly as this one does.
 */
export class ReferenceMemoryStore implements ResilienceStore {
  /** @inheritdoc */
  readonly kind = 'memory-reference';
  private readonly entries = new Map<string, Entry>();
  /*
   * Recency is a doubly linked list through the entries, not the Map's insertion order: taking
   * the oldest key of a Map whose front was deleted from scans every deleted slot until V8
   * compacts the table, which made eviction cost grow with the churn.
   */
  private newest: Entry | undefined = undefined;
  private oldest: Entry | undefined = undefined;
  private evictions = 0;
  private readonly verdict: Verdict = { allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 0 };

  constructor(readonly maxKeys: number) {}

  /** @inheritdoc */
  consume(key: string, limits: readonly LimitSpec[], cost: number, mode: ConsumeMode, nowMs: number): RateLimitDecision {
    const id = storeKey(key);
    const entries = this.entries;
    const entry = entries.get(id);
    if (entry !== undefined && entry !== this.newest) {
      this.unlink(entry);
      this.link(entry);
    }
    if (mode === 'refund') return this.refund(entry, limits, cost, nowMs);

    const verdict = this.verdict;
    const states: LimitState[] = [];
    let allowed = true;
    let retryAfterMs = 0;
    for (let i = 0; i < limits.length; i++) {
      const spec = limits[i]!;
      const slot = entry === undefined ? undefined : findSlot(entry, spec);
      ALGORITHMS[spec.algorithm].check(slot === undefined ? EMPTY_STATE : slot.state, spec, cost, nowMs, verdict);
      states.push({ name: spec.name, limit: spec.limit, windowMs: spec.windowMs, remaining: verdict.remaining, resetMs: verdict.resetMs });
      if (!verdict.allowed) {
        allowed = false;
        if (verdict.retryAfterMs > retryAfterMs) retryAfterMs = verdict.retryAfterMs;
      }
    }
    if (!allowed) return { allowed, retryAfterMs: retryAfterMs === Infinity ? undefined : retryAfterMs, limits: states };
    if (mode === 'consume') {
      const target = entry ?? this.insert(id, limits, nowMs);
      let fullAt = target.fullAt;
      for (let i = 0; i < limits.length; i++) {
        const spec = limits[i]!;
        const slot = findSlot(target, spec) ?? addSlot(target, spec);
        const slotFullAt = ALGORITHMS[spec.algorithm].charge(slot.state, spec, cost, nowMs, verdict);
        if (slotFullAt > fullAt) fullAt = slotFullAt;
        const state = states[i]!;
        state.remaining = verdict.remaining;
        state.resetMs = verdict.resetMs;
      }
      target.fullAt = fullAt;
    }
    return { allowed, retryAfterMs: 0, limits: states };
  }

  /** @inheritdoc */
  reset(key: string, limits: readonly LimitSpec[]): void {
    const id = storeKey(key);
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    let kept: Slot | undefined;
    let last: Slot | undefined;
    for (let slot: Slot | undefined = entry; slot !== undefined; slot = slot.next) {
      if (limits.some((spec) => spec.name === slot!.name)) continue;
      if (last === undefined) kept = slot;
      else last.next = slot;
      last = slot;
    }
    if (kept === undefined) {
      this.remove(entry);
      return;
    }
    last!.next = undefined;
    if (kept !== entry) {
      // The entry carries the first remaining limit.
      entry.name = kept.name;
      entry.algorithm = kept.algorithm;
      entry.state = kept.state;
      entry.next = kept.next;
    }
  }

  /** Counters: keys held and live keys evicted. */
  stats(): MemoryStoreStats {
    return { keys: this.entries.size, evictions: this.evictions };
  }

  /** Forgets every key. */
  clear(): void {
    this.entries.clear();
    this.newest = undefined;
    this.oldest = undefined;
  }

  /** Forgets every key; the store stays usable. */
  close(): Promise<void> {
    this.clear();
    return Promise.resolve();
  }

  private refund(entry: Entry | undefined, limits: readonly LimitSpec[], cost: number, nowMs: number): RateLimitDecision {
    const verdict = this.verdict;
    const states: LimitState[] = [];
    for (let i = 0; i < limits.length; i++) {
      const spec = limits[i]!;
      const slot = entry === undefined ? undefined : findSlot(entry, spec);
      const algorithm = ALGORITHMS[spec.algorithm];
      // A limit without state is full: there is nothing to give back.
      if (slot === undefined) algorithm.check(EMPTY_STATE, spec, 0, nowMs, verdict);
      else algorithm.refund(slot.state, spec, cost, nowMs, verdict);
      states.push({ name: spec.name, limit: spec.limit, windowMs: spec.windowMs, remaining: verdict.remaining, resetMs: verdict.resetMs });
    }
    // `fullAt` is left as it was: an earlier time would only make the entry expire sooner.
    return { allowed: true, retryAfterMs: 0, limits: states };
  }

  /** Adds an entry for a new key, making room first; reuses the dropped entry's objects. */
  private insert(id: string, limits: readonly LimitSpec[], nowMs: number): Entry {
    const entries = this.entries;
    let entry = this.oldest;
    if (entry !== undefined && (entries.size >= this.maxKeys || (entries.size >= this.maxKeys >>> 1 && entry.fullAt <= nowMs))) {
      // Full: the least recently used key makes room. Past half full, it also goes when it is
      // full again (the same as absent), so the store holds about the keys that still have
      // state, without a timer; below half, a returning key finds its entry in place.
      if (entry.fullAt > nowMs) this.evictions++;
      this.remove(entry);
      recycle(entry, limits);
      entry.id = id;
    } else {
      entry = new Entry(id, limits[0]!);
    }
    entries.set(id, entry);
    this.link(entry);
    return entry;
  }

  private remove(entry: Entry): void {
    this.entries.delete(entry.id);
    this.unlink(entry);
  }

  /** Makes `entry` the newest. */
  private link(entry: Entry): void {
    const newest = this.newest;
    entry.older = newest;
    entry.newer = undefined;
    if (newest === undefined) this.oldest = entry;
    else newest.newer = entry;
    this.newest = entry;
  }

  private unlink(entry: Entry): void {
    const { older, newer } = entry;
    if (older === undefined) this.oldest = newer;
    else older.newer = newer;
    if (newer === undefined) this.newest = older;
    else newer.older = older;
    entry.older = undefined;
    entry.newer = undefined;
  }
}

/** The key as stored: itself, or a hash when long (or when it could pass for a hash). */
function storeKey(key: string): string {
  if (key.length <= MAX_KEY_LENGTH && key.charCodeAt(0) !== 0) return key;
  // A hashed key starts with NUL, which no key kept as is starts with: the two never collide.
  const digest = createHash('sha256').update(key).digest();
  digest[0] = 0;
  return digest.toString('latin1', 0, 16);
}

function findSlot(entry: Entry, spec: LimitSpec): Slot | undefined {
  for (let slot: Slot | undefined = entry; slot !== undefined; slot = slot.next) {
    if (slot.name === spec.name && slot.algorithm === spec.algorithm) return slot;
  }
  return undefined;
}

function freshState(algorithm: RateLimitAlgorithm): number[] {
  // Literals of the exact size: an array grown by push reserves 17 slots.
  const size = ALGORITHMS[algorithm].size;
  return size === 1 ? [0] : size === 2 ? [0, 0] : [0, 0, 0];
}

/** Gives `spec` a full state in `slot`. */
function assign(slot: Slot, spec: LimitSpec): void {
  if (slot.algorithm === spec.algorithm) {
    const state = slot.state;
    state.length = ALGORITHMS[spec.algorithm].size;
    state.fill(0);
  } else {
    slot.algorithm = spec.algorithm;
    slot.state = freshState(spec.algorithm);
  }
  slot.name = spec.name;
}

function addSlot(entry: Entry, spec: LimitSpec): Slot {
  let last: Slot = entry;
  for (let slot: Slot | undefined = entry; slot !== undefined; slot = slot.next) {
    // A limit whose algorithm changed at run time starts afresh in its old slot.
    if (slot.name === spec.name) {
      assign(slot, spec);
      return slot;
    }
    last = slot;
  }
  const slot = new Slot(spec.name, spec.algorithm, freshState(spec.algorithm));
  last.next = slot;
  return slot;
}

/** Returns an entry to full with one slot per limit of its next key, reusing its objects. */
function recycle(entry: Entry, limits: readonly LimitSpec[]): void {
  entry.fullAt = 0;
  let slot: Slot = entry;
  assign(slot, limits[0]!);
  for (let i = 1; i < limits.length; i++) {
    if (slot.next === undefined) slot.next = new Slot(limits[i]!.name, limits[i]!.algorithm, freshState(limits[i]!.algorithm));
    else assign(slot.next, limits[i]!);
    slot = slot.next;
  }
  slot.next = undefined;
}
