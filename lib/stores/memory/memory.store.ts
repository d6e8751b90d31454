import { createHash } from 'node:crypto';
import { integerOption, rejectUnknownOptions } from '../../core/validate.js';
import { ALGORITHMS, EMPTY_STATE, type LimitAlgorithm, type Verdict } from '../../policies/rate-limit/algorithms.js';
import type { LimitState, RateLimitAlgorithm, RateLimitDecision } from '../../policies/rate-limit/rate-limit.options.js';
import type { ConsumeMode, LimitSpec, ResilienceStore } from '../store.interface.js';

/** Options of a {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /**
   * The most keys held at once. Beyond it the least recently used key is dropped, so key
   * cardinality (one key per client IP, say) cannot exhaust memory.
   * @default 10_000
   */
  maxKeys?: number;
}

/** Counters of a {@link MemoryStore}. */
export interface MemoryStoreStats {
  /** Keys held now (≤ `maxKeys`); some may already be back to full and awaiting reuse. */
  keys: number;
  /** Keys dropped to make room while their limits were not yet full again (their state was lost). */
  evictions: number;
}

/** Keys longer than this are stored as a hash, so a key's memory does not depend on its length. */
const MAX_KEY_LENGTH = 64;

/*
 * Each key owns a record of STRIDE numbers in one Float64Array: when all its limits are full
 * again, how many of its numbers hold cells, then the cells. A cell is one limit's state: a
 * header (the id of the limit's name × 8 + its algorithm's code) followed by the state. A
 * decision reads one record rather than an entry object and a state array allocated wherever
 * they happened to be: with many keys, such cache misses are most of a decision's cost.
 *
 * A key carries the limits of every limit set decided on it (in Nest, the client's IP carries
 * each handler's limits, under their own names), so its cells are looked up by header. Cells
 * beyond the record's room go on in an overflow array of the key's. A sliding log's state grows:
 * its cell holds the number of its array in a pool of logs.
 */
const STRIDE = 8;
const FULL_AT = 0;
const USED = 1;
const CELLS = 2;
/** Numbers of cells a record holds: a sliding window counter and a GCRA, two token buckets… */
const ROOM = STRIDE - CELLS;
/** `USED` of a key whose limits are kept as a chain of {@link Slot}s (limit names beyond {@link MAX_NAMES}). */
const CHAINED = -1;
/** Record 0 is never a key's: all zeros, it is the full state of a limit not held. */
const NONE = 0;
const ZERO = CELLS + 1;
const FIRST_CAPACITY = 64;
/** Limit names given ids; limits named beyond are kept in chains, so the name registry stays bounded. */
const MAX_NAMES = 65_536;

const CODES: Readonly<Record<RateLimitAlgorithm, number>> = { 'token-bucket': 0, gcra: 1, 'fixed-window': 2, 'sliding-window-counter': 3, 'sliding-window-log': 4 };
const BY_CODE: readonly RateLimitAlgorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];
const LOG = CODES['sliding-window-log'];
/** Numbers of a cell by algorithm code: its header, then its state or (sliding log) its number in the pool. */
const CELL_SIZE: readonly number[] = BY_CODE.map((algorithm) => (ALGORITHMS[algorithm].fixed ? 1 + ALGORITHMS[algorithm].size : 2));

/** A limit set as the store reads it: each limit's cell header and algorithm. */
class Layout {
  readonly headers: number[] = [];
  readonly algorithms: LimitAlgorithm[] = [];
  /** Some limit's name has no id: decisions on these limits go through chains of slots. */
  chained = false;

  constructor(
    /** The limits it was built from; a call with other objects looks its layout up again. */
    readonly specs: readonly LimitSpec[],
    idOf: (name: string) => number,
  ) {
    for (const spec of specs) {
      const id = idOf(spec.name);
      // Two limits of one name (policies never pass them) would share a cell: chains keep them apart.
      if (id === 0 || specs.some((other) => other !== spec && other.name === spec.name)) this.chained = true;
      this.headers.push(id * 8 + CODES[spec.algorithm]);
      this.algorithms.push(ALGORITHMS[spec.algorithm]);
    }
  }
}

/** What a key holds beyond its record, when it does. */
class Extra {
  /** Cells beyond the record's room: [numbers used, cells...]. */
  cells: Float64Array | undefined = undefined;
  /** The limits of a chained key. */
  chain: Slot | undefined = undefined;
}

/** The state of one limit of a chained key; a key's limits form a chain. */
class Slot {
  next: Slot | undefined = undefined;

  constructor(
    public name: string,
    public algorithm: RateLimitAlgorithm,
    public state: number[],
  ) {}
}

const KNOWN_OPTIONS = ['maxKeys'] as const;

/**
 * The in-process store: rate-limit state in flat typed arrays indexed through a bounded `Map`,
 * decided synchronously.
 *
 * Bounded by `maxKeys` with least-recently-used eviction; state expires lazily (an entry whose
 * limits are all full again is the same as no entry and is reused or dropped when met), so there
 * is no timer per key or per request. Keys longer than 64 characters are stored as 120 bits of
 * their SHA-256.
 *
 * Keys are shared by every policy using the store: the caller namespaces them. Within a key,
 * each limit's state is identified by the limit's name and algorithm.
 */
export class MemoryStore implements ResilienceStore {
  /** @inheritdoc */
  readonly kind = 'memory';
  /** The bound on keys held. */
  readonly maxKeys: number;
  /** Key → record number. */
  private readonly index = new Map<string, number>();
  /** Records, STRIDE numbers each (see above); record 0 stays zero. */
  private records: Float64Array;
  /*
   * Recency is a doubly linked list of record numbers, [older, newer] per record, 0 for none:
   * eight bytes per key, so the links of all keys stay in cache far longer than records would.
   * Not the Map's insertion order: taking the oldest key of a Map whose front was deleted from
   * scans every deleted slot until V8 compacts the table, which made eviction grow with churn.
   */
  private links: Int32Array;
  /** Record → its key, to drop it from the index when the record is reused. */
  private keys: (string | undefined)[] = [undefined];
  /** Record → its overflow cells or chain, if any. */
  private extra: (Extra | undefined)[] = [undefined];
  /** The states of the sliding logs of all keys, by the number their cells hold. */
  private logs: number[][] = [];
  /** Numbers of `logs` free for reuse (their arrays are reused too). */
  private freeLogs: number[] = [];
  private capacity: number;
  /** Records handed out so far (record 0 excluded). */
  private used = 0;
  /** Records given back by `reset`, linked through their `newer` link. */
  private free = NONE;
  private newest = NONE;
  private oldest = NONE;
  private evictions = 0;
  /** Whether the last decision admitted its call. */
  private admitted = false;
  private readonly verdict: Verdict = { allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 0 };
  /** Where each limit's cell was found by the decision under way (see {@link find}). */
  private positions = new Int32Array(4);
  private readonly nameIds = new Map<string, number>();
  private readonly names: string[] = [''];
  private readonly idOf = (name: string): number => {
    let id = this.nameIds.get(name);
    if (id === undefined) {
      if (this.names.length > MAX_NAMES) return 0;
      id = this.names.length;
      this.names.push(name);
      this.nameIds.set(name, id);
    }
    return id;
  };
  private readonly layouts = new WeakMap<readonly LimitSpec[], Layout>();
  private lastLimits: readonly LimitSpec[] | undefined = undefined;
  private lastLayout: Layout | undefined = undefined;

  /** @throws InvalidOptionError when `maxKeys` is not an integer ≥ 1. */
  constructor(options: MemoryStoreOptions = {}) {
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    this.maxKeys = integerOption(options.maxKeys, 'maxKeys', 10_000, 1);
    this.capacity = Math.min(this.maxKeys, FIRST_CAPACITY);
    this.records = new Float64Array((this.capacity + 1) * STRIDE);
    this.links = new Int32Array((this.capacity + 1) * 2);
  }

  /** @inheritdoc */
  consume(key: string, limits: readonly LimitSpec[], cost: number, mode: ConsumeMode, nowMs: number): RateLimitDecision {
    return this.decide(key, limits, cost, mode, nowMs, true)!;
  }

  /**
   * Charges `cost` to every limit of `key` when all have room, as {@link consume} does in mode
   * `'consume'`, and tells only whether it did: no decision object is built, for callers that
   * would drop it. A refused call changes nothing, so a `'peek'` at the same `nowMs` then tells
   * what `consume` would have answered.
   */
  tryConsume(key: string, limits: readonly LimitSpec[], cost: number, nowMs: number): boolean {
    this.decide(key, limits, cost, 'consume', nowMs, false);
    return this.admitted;
  }

  /** Decides; builds the decision only when `report` (else sets {@link admitted} only). */
  private decide(key: string, limits: readonly LimitSpec[], cost: number, mode: ConsumeMode, nowMs: number, report: boolean): RateLimitDecision | undefined {
    const layout = limits === this.lastLimits ? this.lastLayout! : this.layoutOf(limits);
    const id = storeKey(key);
    let record = this.index.get(id) ?? NONE;
    if (record !== NONE) {
      if (record !== this.newest) this.touch(record);
      if (layout.chained || this.records[record * STRIDE + USED] === CHAINED) return this.reported(this.consumeChained(record, id, limits, cost, mode, nowMs));
    } else if (layout.chained) {
      return this.reported(this.consumeChained(NONE, id, limits, cost, mode, nowMs));
    }
    if (mode === 'refund') return this.reported(this.refund(record, layout, limits, cost, nowMs));

    const count = limits.length;
    if (this.positions.length < count) this.positions = new Int32Array(count);
    const positions = this.positions;
    const verdict = this.verdict;
    let missing = false;
    let states: LimitState[] | undefined;
    let allowed = true;
    let retryAfterMs = 0;
    for (let i = 0; i < count; i++) {
      const spec = limits[i]!;
      const algorithm = layout.algorithms[i]!;
      const at = record === NONE ? 0 : this.find(record, layout.headers[i]!);
      positions[i] = at;
      if (at === 0) {
        missing = true;
        if (algorithm.fixed) algorithm.check(this.records, spec, cost, nowMs, verdict, ZERO);
        else algorithm.check(EMPTY_LOG, spec, cost, nowMs, verdict);
      } else if (!algorithm.fixed) algorithm.check(this.logAt(record, at), spec, cost, nowMs, verdict);
      else if (at > 0) algorithm.check(this.records, spec, cost, nowMs, verdict, at);
      else algorithm.check(this.extra[record]!.cells!, spec, cost, nowMs, verdict, -at);
      if (report) {
        const state: LimitState = { name: spec.name, limit: spec.limit, windowMs: spec.windowMs, remaining: verdict.remaining, resetMs: verdict.resetMs };
        // A literal of one: an array grown by push from empty reserves 17 slots.
        if (states === undefined) states = [state];
        else states.push(state);
      }
      if (!verdict.allowed) {
        allowed = false;
        if (verdict.retryAfterMs > retryAfterMs) retryAfterMs = verdict.retryAfterMs;
      }
    }
    this.admitted = allowed;
    if (!allowed) return report ? { allowed, retryAfterMs: retryAfterMs === Infinity ? undefined : retryAfterMs, limits: states ?? [] } : undefined;
    if (mode === 'consume') {
      if (record === NONE) record = this.insert(id, nowMs);
      // Adding cells moves others: the positions are read again once every limit has one.
      if (missing) this.place(record, layout);
      const records = this.records;
      const base = record * STRIDE;
      let fullAt = records[base + FULL_AT]!;
      for (let i = 0; i < count; i++) {
        const spec = limits[i]!;
        const algorithm = layout.algorithms[i]!;
        const at = positions[i]!;
        const limitFullAt = !algorithm.fixed
          ? algorithm.charge(this.logAt(record, at), spec, cost, nowMs, verdict)
          : at > 0
            ? algorithm.charge(records, spec, cost, nowMs, verdict, at)
            : algorithm.charge(this.extra[record]!.cells!, spec, cost, nowMs, verdict, -at);
        if (limitFullAt > fullAt) fullAt = limitFullAt;
        if (states !== undefined) {
          const state = states[i]!;
          state.remaining = verdict.remaining;
          state.resetMs = verdict.resetMs;
        }
      }
      records[base + FULL_AT] = fullAt;
    }
    return report ? { allowed, retryAfterMs: 0, limits: states ?? [] } : undefined;
  }

  /** A decision from a path that always builds one; records whether it admitted. */
  private reported(decision: RateLimitDecision): RateLimitDecision {
    this.admitted = decision.allowed;
    return decision;
  }

  /** @inheritdoc */
  reset(key: string, limits: readonly LimitSpec[]): void {
    const id = storeKey(key);
    const record = this.index.get(id);
    if (record === undefined) return;
    const base = record * STRIDE;
    if (this.records[base + USED] === CHAINED) {
      const extra = this.extra[record]!;
      let kept: Slot | undefined;
      let last: Slot | undefined;
      for (let slot = extra.chain; slot !== undefined; slot = slot.next) {
        if (limits.some((spec) => spec.name === slot!.name)) continue;
        if (last === undefined) kept = slot;
        else last.next = slot;
        last = slot;
      }
      if (last !== undefined) last.next = undefined;
      extra.chain = kept;
      if (kept === undefined) this.release(record);
      return;
    }
    for (const spec of limits) {
      const nameId = this.nameIds.get(spec.name);
      if (nameId !== undefined) this.removeName(record, nameId);
    }
    const cells = this.extra[record]?.cells;
    if (this.records[base + USED] === 0 && (cells === undefined || cells[0] === 0)) this.release(record);
  }

  /** Counters: keys held and live keys evicted. */
  stats(): MemoryStoreStats {
    return { keys: this.index.size, evictions: this.evictions };
  }

  /** Forgets every key. */
  clear(): void {
    this.index.clear();
    this.capacity = Math.min(this.maxKeys, FIRST_CAPACITY);
    this.records = new Float64Array((this.capacity + 1) * STRIDE);
    this.links = new Int32Array((this.capacity + 1) * 2);
    this.keys = [undefined];
    this.extra = [undefined];
    this.logs = [];
    this.freeLogs = [];
    this.used = 0;
    this.free = NONE;
    this.newest = NONE;
    this.oldest = NONE;
  }

  /** Forgets every key; the store stays usable. */
  close(): Promise<void> {
    this.clear();
    return Promise.resolve();
  }

  /** The layout of `limits`, built on first sight of the array (or of its elements). */
  private layoutOf(limits: readonly LimitSpec[]): Layout {
    let layout = this.layouts.get(limits);
    if (layout === undefined || layout.specs.length !== limits.length || layout.specs.some((spec, i) => spec !== limits[i])) {
      layout = new Layout(limits.slice(), this.idOf);
      this.layouts.set(limits, layout);
    }
    this.lastLimits = limits;
    this.lastLayout = layout;
    return layout;
  }

  /**
   * Where the state of the cell `header` of `record` starts: > 0 in the records, < 0 (negated)
   * in the key's overflow cells, 0 when the key has no such cell.
   */
  private find(record: number, header: number): number {
    const records = this.records;
    let at = record * STRIDE + CELLS;
    const end = at + records[record * STRIDE + USED]!;
    while (at < end) {
      const found = records[at]!;
      if (found === header) return at + 1;
      at += CELL_SIZE[found & 7]!;
    }
    const cells = this.extra[record]?.cells;
    if (cells === undefined) return 0;
    const last = 1 + cells[0]!;
    for (at = 1; at < last; at += CELL_SIZE[cells[at]! & 7]!) {
      if (cells[at] === header) return -(at + 1);
    }
    return 0;
  }

  /** The sliding log whose cell is at `at` (as {@link find} tells) in `record`. */
  private logAt(record: number, at: number): number[] {
    return this.logs[at > 0 ? this.records[at]! : this.extra[record]!.cells![-at]!]!;
  }

  /** A full sliding log from the pool; its number. */
  private newLog(): number {
    const free = this.freeLogs.pop();
    if (free === undefined) return this.logs.push(freshState('sliding-window-log')) - 1;
    const state = this.logs[free]!;
    // Shortened, not replaced: the ring it grew is released, the array stays packed.
    state.length = 2;
    state[0] = 0;
    state[1] = 0;
    return free;
  }

  /** Gives the pool back the logs of the cells in `cells` from `from` to `to`. */
  private dropLogs(cells: Float64Array, from: number, to: number): void {
    for (let at = from; at < to; at += CELL_SIZE[cells[at]! & 7]!) if ((cells[at]! & 7) === LOG) this.freeLogs.push(cells[at + 1]!);
  }

  /** Gives every limit of `layout` a cell in `record` (a fresh one for a limit new to the key), then finds them all. */
  private place(record: number, layout: Layout): void {
    const headers = layout.headers;
    for (const header of headers) {
      if (this.find(record, header) !== 0) continue;
      // A limit whose algorithm changed at run time starts afresh: its old state goes.
      this.removeName(record, Math.floor(header / 8));
      this.addCell(record, header);
    }
    for (let i = 0; i < headers.length; i++) this.positions[i] = this.find(record, headers[i]!);
  }

  /** Appends a full cell: in the record while it has room, else in the key's overflow cells. */
  private addCell(record: number, header: number): void {
    const size = CELL_SIZE[header & 7]!;
    const log = (header & 7) === LOG ? this.newLog() : 0;
    const records = this.records;
    const base = record * STRIDE;
    const used = records[base + USED]!;
    if (used + size <= ROOM) {
      records[base + CELLS + used] = header;
      records.fill(0, base + CELLS + used + 1, base + CELLS + used + size);
      if ((header & 7) === LOG) records[base + CELLS + used + 1] = log;
      records[base + USED] = used + size;
      return;
    }
    const extra = this.extraOf(record);
    let cells = extra.cells ?? new Float64Array(1 + 2 * ROOM);
    const taken = cells[0]!;
    if (1 + taken + size > cells.length) {
      const larger = new Float64Array(cells.length * 2);
      larger.set(cells);
      cells = larger;
    }
    cells[1 + taken] = header;
    cells.fill(0, 2 + taken, 1 + taken + size);
    if ((header & 7) === LOG) cells[2 + taken] = log;
    cells[0] = taken + size;
    extra.cells = cells;
  }

  /** Drops the cell of the limit named `nameId`, if the key has one (it has one at most). */
  private removeName(record: number, nameId: number): void {
    const records = this.records;
    const base = record * STRIDE;
    const end = base + CELLS + records[base + USED]!;
    for (let at = base + CELLS; at < end; at += CELL_SIZE[records[at]! & 7]!) {
      if (Math.floor(records[at]! / 8) !== nameId) continue;
      const size = CELL_SIZE[records[at]! & 7]!;
      this.dropLogs(records, at, at + size);
      records.copyWithin(at, at + size, end);
      records.fill(0, end - size, end);
      records[base + USED] = end - size - base - CELLS;
      return;
    }
    const cells = this.extra[record]?.cells;
    if (cells === undefined) return;
    const last = 1 + cells[0]!;
    for (let at = 1; at < last; at += CELL_SIZE[cells[at]! & 7]!) {
      if (Math.floor(cells[at]! / 8) !== nameId) continue;
      const size = CELL_SIZE[cells[at]! & 7]!;
      this.dropLogs(cells, at, at + size);
      cells.copyWithin(at, at + size, last);
      cells.fill(0, last - size, last);
      cells[0] = last - size - 1;
      return;
    }
  }

  private extraOf(record: number): Extra {
    return (this.extra[record] ??= new Extra());
  }

  private refund(record: number, layout: Layout, limits: readonly LimitSpec[], cost: number, nowMs: number): RateLimitDecision {
    const verdict = this.verdict;
    const states: LimitState[] = [];
    for (let i = 0; i < limits.length; i++) {
      const spec = limits[i]!;
      const algorithm = layout.algorithms[i]!;
      // A limit without state is full: there is nothing to give back.
      const at = record === NONE ? 0 : this.find(record, layout.headers[i]!);
      if (at === 0) {
        if (algorithm.fixed) algorithm.check(this.records, spec, 0, nowMs, verdict, ZERO);
        else algorithm.check(EMPTY_LOG, spec, 0, nowMs, verdict);
      } else if (!algorithm.fixed) algorithm.refund(this.logAt(record, at), spec, cost, nowMs, verdict);
      else if (at > 0) algorithm.refund(this.records, spec, cost, nowMs, verdict, at);
      else algorithm.refund(this.extra[record]!.cells!, spec, cost, nowMs, verdict, -at);
      states.push({ name: spec.name, limit: spec.limit, windowMs: spec.windowMs, remaining: verdict.remaining, resetMs: verdict.resetMs });
    }
    // `fullAt` is left as it was: an earlier time would only make the entry expire sooner.
    return { allowed: true, retryAfterMs: 0, limits: states };
  }

  /** Turns the cells and logs of `record` into a chain of slots holding the same states. */
  private chain(record: number): void {
    const records = this.records;
    const base = record * STRIDE;
    const extra = this.extraOf(record);
    const slots: Slot[] = [];
    const collect = (cells: Float64Array, from: number, to: number): void => {
      for (let at = from; at < to; at += CELL_SIZE[cells[at]! & 7]!) {
        const header = cells[at]!;
        const name = this.names[Math.floor(header / 8)]!;
        if ((header & 7) !== LOG) {
          slots.push(new Slot(name, BY_CODE[header & 7]!, Array.from(cells.subarray(at + 1, at + CELL_SIZE[header & 7]!))));
          continue;
        }
        // The slot takes the log's array; the pool gets a fresh one in its place.
        const log = cells[at + 1]!;
        slots.push(new Slot(name, 'sliding-window-log', this.logs[log]!));
        this.logs[log] = freshState('sliding-window-log');
        this.freeLogs.push(log);
      }
    };
    collect(records, base + CELLS, base + CELLS + records[base + USED]!);
    if (extra.cells !== undefined) collect(extra.cells, 1, 1 + extra.cells[0]!);
    for (let i = 1; i < slots.length; i++) slots[i - 1]!.next = slots[i];
    records.fill(0, base + CELLS, base + STRIDE);
    records[base + USED] = CHAINED;
    extra.cells = undefined;
    extra.chain = slots[0];
  }

  /** Decides for a chained key (`record` NONE: a key not held) by the names and algorithms of its slots. */
  private consumeChained(record: number, id: string, limits: readonly LimitSpec[], cost: number, mode: ConsumeMode, nowMs: number): RateLimitDecision {
    if (record !== NONE && this.records[record * STRIDE + USED] !== CHAINED) this.chain(record);
    const head = record === NONE ? undefined : this.extra[record]!.chain;
    const verdict = this.verdict;
    const states: LimitState[] = [];
    if (mode === 'refund') {
      for (const spec of limits) {
        const slot = findSlot(head, spec);
        const algorithm = ALGORITHMS[spec.algorithm];
        if (slot === undefined) algorithm.check(EMPTY_STATE, spec, 0, nowMs, verdict);
        else algorithm.refund(slot.state, spec, cost, nowMs, verdict);
        states.push({ name: spec.name, limit: spec.limit, windowMs: spec.windowMs, remaining: verdict.remaining, resetMs: verdict.resetMs });
      }
      return { allowed: true, retryAfterMs: 0, limits: states };
    }
    let allowed = true;
    let retryAfterMs = 0;
    for (const spec of limits) {
      const slot = findSlot(head, spec);
      ALGORITHMS[spec.algorithm].check(slot === undefined ? EMPTY_STATE : slot.state, spec, cost, nowMs, verdict);
      states.push({ name: spec.name, limit: spec.limit, windowMs: spec.windowMs, remaining: verdict.remaining, resetMs: verdict.resetMs });
      if (!verdict.allowed) {
        allowed = false;
        if (verdict.retryAfterMs > retryAfterMs) retryAfterMs = verdict.retryAfterMs;
      }
    }
    if (!allowed) return { allowed, retryAfterMs: retryAfterMs === Infinity ? undefined : retryAfterMs, limits: states };
    if (mode === 'consume') {
      if (record === NONE) {
        record = this.insert(id, nowMs);
        this.records[record * STRIDE + USED] = CHAINED;
      }
      const extra = this.extraOf(record);
      const base = record * STRIDE;
      let fullAt = this.records[base + FULL_AT]!;
      for (let i = 0; i < limits.length; i++) {
        const spec = limits[i]!;
        const slot = findSlot(extra.chain, spec) ?? addSlot(extra, spec);
        const limitFullAt = ALGORITHMS[spec.algorithm].charge(slot.state, spec, cost, nowMs, verdict);
        if (limitFullAt > fullAt) fullAt = limitFullAt;
        const state = states[i]!;
        state.remaining = verdict.remaining;
        state.resetMs = verdict.resetMs;
      }
      this.records[base + FULL_AT] = fullAt;
    }
    return { allowed, retryAfterMs: 0, limits: states };
  }

  /** Adds a record for a new key, with no cell yet, making room first. */
  private insert(id: string, nowMs: number): number {
    const index = this.index;
    let record = this.oldest;
    if (record !== NONE && (index.size >= this.maxKeys || (index.size >= this.maxKeys >>> 1 && this.records[record * STRIDE + FULL_AT]! <= nowMs))) {
      // Full: the least recently used key makes room. Past half full, it also goes when it is
      // full again (the same as absent), so the store holds about the keys that still have
      // state, without a timer; below half, a returning key finds its entry in place.
      if (this.records[record * STRIDE + FULL_AT]! > nowMs) this.evictions++;
      this.remove(record);
    } else if (this.free !== NONE) {
      record = this.free;
      this.free = this.links[record * 2 + 1]!;
    } else {
      if (this.used === this.capacity) this.grow();
      record = ++this.used;
    }
    this.records.fill(0, record * STRIDE, record * STRIDE + STRIDE);
    // Written in record order, so that both arrays stay packed.
    this.keys[record] = id;
    this.extra[record] = undefined;
    index.set(id, record);
    this.link(record);
    return record;
  }

  /** Doubles the room for records, up to `maxKeys`. */
  private grow(): void {
    this.capacity = Math.min(this.maxKeys, this.capacity * 2);
    const records = new Float64Array((this.capacity + 1) * STRIDE);
    records.set(this.records);
    this.records = records;
    const links = new Int32Array((this.capacity + 1) * 2);
    links.set(this.links);
    this.links = links;
  }

  private remove(record: number): void {
    const base = record * STRIDE;
    const used = this.records[base + USED]!;
    if (used > 0) this.dropLogs(this.records, base + CELLS, base + CELLS + used);
    const cells = this.extra[record]?.cells;
    if (cells !== undefined) this.dropLogs(cells, 1, 1 + cells[0]!);
    this.index.delete(this.keys[record]!);
    this.keys[record] = undefined;
    this.extra[record] = undefined;
    this.unlink(record);
  }

  /** Forgets a key and keeps its record for the next new one. */
  private release(record: number): void {
    this.remove(record);
    this.links[record * 2 + 1] = this.free;
    this.free = record;
  }

  /** Makes `record` the newest. */
  private touch(record: number): void {
    this.unlink(record);
    this.link(record);
  }

  private link(record: number): void {
    const links = this.links;
    const newest = this.newest;
    links[record * 2] = newest;
    links[record * 2 + 1] = NONE;
    if (newest === NONE) this.oldest = record;
    else links[newest * 2 + 1] = record;
    this.newest = record;
  }

  private unlink(record: number): void {
    const links = this.links;
    const older = links[record * 2]!;
    const newer = links[record * 2 + 1]!;
    if (older === NONE) this.oldest = newer;
    else links[older * 2 + 1] = newer;
    if (newer === NONE) this.newest = older;
    else links[newer * 2] = older;
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

function findSlot(head: Slot | undefined, spec: LimitSpec): Slot | undefined {
  for (let slot = head; slot !== undefined; slot = slot.next) {
    if (slot.name === spec.name && slot.algorithm === spec.algorithm) return slot;
  }
  return undefined;
}

/** Gives `spec` a slot in the chain: its old one if only the algorithm changed. */
function addSlot(extra: Extra, spec: LimitSpec): Slot {
  let last: Slot | undefined;
  for (let slot = extra.chain; slot !== undefined; slot = slot.next) {
    // A limit whose algorithm changed at run time starts afresh in its old slot.
    if (slot.name === spec.name) {
      slot.algorithm = spec.algorithm;
      slot.state = freshState(spec.algorithm);
      return slot;
    }
    last = slot;
  }
  const slot = new Slot(spec.name, spec.algorithm, freshState(spec.algorithm));
  if (last === undefined) extra.chain = slot;
  else last.next = slot;
  return slot;
}

function freshState(algorithm: RateLimitAlgorithm): number[] {
  // Literals of the exact size (an array grown by push reserves 17 slots), made arrays of
  // doubles at once: states hold doubles, and element reads stay fast while every state
  // array is of one kind.
  const size = ALGORITHMS[algorithm].size;
  const state = size === 1 ? [0.5] : size === 2 ? [0.5, 0] : [0.5, 0, 0];
  state[0] = 0;
  return state;
}

/** A full sliding log, for keys that have none; never written. */
const EMPTY_LOG = freshState('sliding-window-log');
