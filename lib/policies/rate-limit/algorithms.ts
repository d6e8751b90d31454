/*
 * The five rate-limiting algorithms as small functions over a plain numeric state.
 *
 * Every store runs exactly this arithmetic: the memory store calls these functions, the Redis
 * store mirrors them line by line in Lua. Each algorithm is three functions and a state layout:
 *
 * - `check(state, spec, cost, now, out, at)` reads the state and tells whether a call of `cost`
 *   units passes at `now`, how many whole units are available, the ms until the limit is full
 *   again, and (when refused) the ms until such a call would pass. It never writes the state, so
 *   it may be handed the shared {@link EMPTY_STATE}.
 * - `charge(state, ...)` takes `cost` units (called only after every limit's `check` passed) and
 *   returns the absolute time at which the limit is full again;
 * - `refund(state, ...)` gives up to `cost` units back, never beyond a full limit.
 *
 * A fixed-size state (every algorithm but the sliding log) may sit anywhere in a larger array:
 * `at` is the index of its first number, so the memory store keeps the states of all its keys in
 * one typed array, with no object per key. The sliding log's state is a whole array of its own,
 * since it grows.
 *
 * A state of zeros means "full" for every algorithm, so an absent key is read as zeros (Lua:
 * `tonumber(x) or 0`). Times are milliseconds on the store's clock, assumed ≥ 0 and
 * non-decreasing; a reading earlier than the state's is treated as no time passing.
 * Comparisons allow a slack of 1e-9 of the capacity, at most a thousandth of a unit, so that
 * waiting exactly the reported `retryAfterMs` passes despite floating-point rounding, and a very
 * large limit (10⁹) still counts its every unit.
 *
 * Worst cases, for `L` = limit, `W` = window, `B` = burst and rate `r = L / W`:
 * - fixed window: ≤ L per aligned window, but up to 2L in a sliding window of length W (a burst
 *   at the end of one window and another at the start of the next);
 * - sliding window counter: ≤ L per aligned window and up to 2L in a sliding window (it
 *   estimates the previous window's hits as evenly spread); O(1) state;
 * - sliding window log: exact, ≤ L in every window (t − W, t]; O(L) state per key;
 * - token bucket and GCRA (the same policy in two representations): ≤ B + r·Δ in every interval
 *   of length Δ; with B = L, at most 2L in a window of length W.
 */
import type { LimitSpec } from '../../stores/store.interface.js';
import type { RateLimitAlgorithm } from './rate-limit.options.js';

/** What `check`, `charge` and `refund` report; one record is reused across calls by its owner. */
export interface Verdict {
  /** `check`: whether a call of the cost passes. */
  allowed: boolean;
  /** Whole units available (before the charge for `check`, after it for `charge`/`refund`), ≥ 0. */
  remaining: number;
  /** Milliseconds until the limit is fully available again. */
  resetMs: number;
  /** `check` on refusal: ms until a call of the cost would pass; `Infinity` when it never could. 0 when allowed. */
  retryAfterMs: number;
}

/** Where states are written: a plain array, or a typed array holding the states of many keys. */
export interface StateArray {
  [index: number]: number;
  readonly length: number;
}

/** One algorithm: its functions and the length of its initial state. */
export interface LimitAlgorithm {
  /** Length of a fresh state (all zeros). The sliding log grows from there. */
  readonly size: number;
  /** Whether the state keeps its `size` for ever, so that it can sit at an offset `at` of a larger array. */
  readonly fixed: boolean;
  check(state: ArrayLike<number>, spec: LimitSpec, cost: number, now: number, out: Verdict, at?: number): void;
  charge(state: StateArray, spec: LimitSpec, cost: number, now: number, out: Verdict, at?: number): number;
  refund(state: StateArray, spec: LimitSpec, cost: number, now: number, out: Verdict, at?: number): number;
}

/** Relative slack of comparisons; see the file comment. */
export const TOLERANCE = 1e-9;
/** The most slack, in units, whatever the capacity. */
const MAX_SLACK = 1e-3;

/** The slack of a comparison against `capacity` units. */
function slack(capacity: number): number {
  const units = capacity * TOLERANCE;
  return units < MAX_SLACK ? units : MAX_SLACK;
}

/** A full state for every algorithm; never written. */
export const EMPTY_STATE: ArrayLike<number> = Object.freeze([0, 0, 0]);

function wholeUnits(units: number, capacity: number): number {
  const whole = Math.floor(units + slack(capacity));
  return whole < 0 ? 0 : whole > capacity ? capacity : whole;
}

function allow(out: Verdict): void {
  out.allowed = true;
  out.retryAfterMs = 0;
}

function refuse(out: Verdict, retryAfterMs: number): void {
  out.allowed = false;
  out.retryAfterMs = retryAfterMs;
}

/*
 * Token bucket. State: [deficit, updatedAt] — units missing from a full bucket at `updatedAt`.
 * Refills at r = limit / window units per ms up to `burst`.
 */
function bucketDeficit(state: ArrayLike<number>, at: number, rate: number, now: number): number {
  const elapsed = now - state[at + 1]!;
  const deficit = elapsed > 0 ? state[at]! - elapsed * rate : state[at]!;
  return deficit > 0 ? deficit : 0;
}

/** Token bucket: `burst` units at once, refilled continuously at `limit` per `window`. */
export const tokenBucket: LimitAlgorithm = {
  size: 2,
  fixed: true,
  check(state, spec, cost, now, out, at = 0) {
    const rate = spec.limit / spec.windowMs;
    const capacity = spec.burst;
    const deficit = bucketDeficit(state, at, rate, now);
    const available = capacity - deficit;
    out.remaining = wholeUnits(available, capacity);
    out.resetMs = deficit / rate;
    if (cost > capacity) refuse(out, Infinity);
    else if (cost <= available + slack(capacity)) allow(out);
    else refuse(out, (cost - available) / rate);
  },
  charge(state, spec, cost, now, out, at = 0) {
    const rate = spec.limit / spec.windowMs;
    const deficit = bucketDeficit(state, at, rate, now) + cost;
    const updatedAt = now > state[at + 1]! ? now : state[at + 1]!;
    state[at] = deficit;
    state[at + 1] = updatedAt;
    const fullAt = updatedAt + deficit / rate;
    out.remaining = wholeUnits(spec.burst - deficit, spec.burst);
    out.resetMs = fullAt - now;
    return fullAt;
  },
  refund(state, spec, cost, now, out, at = 0) {
    const rate = spec.limit / spec.windowMs;
    const left = bucketDeficit(state, at, rate, now) - cost;
    const deficit = left > 0 ? left : 0;
    const updatedAt = now > state[at + 1]! ? now : state[at + 1]!;
    state[at] = deficit;
    state[at + 1] = updatedAt;
    const fullAt = updatedAt + deficit / rate;
    out.remaining = wholeUnits(spec.burst - deficit, spec.burst);
    out.resetMs = fullAt - now;
    return fullAt;
  },
};

/*
 * GCRA. State: [tat] — the theoretical arrival time; the limit is full when tat ≤ now.
 * Emission interval T = window / limit; a call of cost c passes when tat + c·T − burst·T ≤ now.
 */

/** Generic cell rate algorithm: the token bucket's policy, stored as one timestamp. */
export const gcra: LimitAlgorithm = {
  size: 1,
  fixed: true,
  check(state, spec, cost, now, out, at = 0) {
    const interval = spec.windowMs / spec.limit;
    const burst = spec.burst;
    const tolerance = burst * interval;
    const tat = state[at]! > now ? state[at]! : now;
    out.remaining = wholeUnits((now + tolerance - tat) / interval, burst);
    out.resetMs = tat - now;
    if (cost > burst) {
      refuse(out, Infinity);
      return;
    }
    const wait = tat + cost * interval - tolerance - now;
    if (wait <= interval * slack(burst)) allow(out);
    else refuse(out, wait);
  },
  charge(state, spec, cost, now, out, at = 0) {
    const interval = spec.windowMs / spec.limit;
    const tat = (state[at]! > now ? state[at]! : now) + cost * interval;
    state[at] = tat;
    out.remaining = wholeUnits((now + spec.burst * interval - tat) / interval, spec.burst);
    out.resetMs = tat - now;
    return tat;
  },
  refund(state, spec, cost, now, out, at = 0) {
    const interval = spec.windowMs / spec.limit;
    const earlier = (state[at]! > now ? state[at]! : now) - cost * interval;
    const tat = earlier > now ? earlier : now;
    state[at] = tat;
    out.remaining = wholeUnits((now + spec.burst * interval - tat) / interval, spec.burst);
    out.resetMs = tat - now;
    return tat;
  },
};

/*
 * Fixed window. State: [windowIndex, count]; windows are aligned: index = floor(now / window).
 */

/** Fixed window: `limit` units per aligned window, counted from zero at each window start. */
export const fixedWindow: LimitAlgorithm = {
  size: 2,
  fixed: true,
  check(state, spec, cost, now, out, at = 0) {
    const windowMs = spec.windowMs;
    const limit = spec.limit;
    let index = Math.floor(now / windowMs);
    let count = 0;
    if (index <= state[at]!) {
      index = state[at]!;
      count = state[at + 1]!;
    }
    const left = limit - count;
    out.remaining = left > 0 ? left : 0;
    out.resetMs = count > 0 ? (index + 1) * windowMs - now : 0;
    if (cost > limit) refuse(out, Infinity);
    else if (count + cost <= limit) allow(out);
    else refuse(out, (index + 1) * windowMs - now);
  },
  charge(state, spec, cost, now, out, at = 0) {
    const windowMs = spec.windowMs;
    let index = Math.floor(now / windowMs);
    let count = 0;
    if (index <= state[at]!) {
      index = state[at]!;
      count = state[at + 1]!;
    }
    count += cost;
    state[at] = index;
    state[at + 1] = count;
    const end = (index + 1) * windowMs;
    const left = spec.limit - count;
    out.remaining = left > 0 ? left : 0;
    out.resetMs = end - now;
    return end;
  },
  refund(state, spec, cost, now, out, at = 0) {
    const windowMs = spec.windowMs;
    let index = Math.floor(now / windowMs);
    let count = 0;
    if (index <= state[at]!) {
      index = state[at]!;
      count = state[at + 1]! > cost ? state[at + 1]! - cost : 0;
    }
    state[at] = index;
    state[at + 1] = count;
    const fullAt = count > 0 ? (index + 1) * windowMs : now;
    const left = spec.limit - count;
    out.remaining = left > 0 ? left : 0;
    out.resetMs = fullAt - now;
    return fullAt;
  },
};

/*
 * Sliding window counter. State: [windowIndex, previous, current] — the counts of the aligned
 * window `windowIndex` (current) and the one before it (previous). The estimate at `now` weighs
 * the previous count by the part of it still inside (now − window, now]:
 *   estimate = previous · (1 − (now − start) / window) + current.
 * It never increases without a charge, and is continuous across a window start.
 */

/**
 * Sliding window counter: O(1) per key; weights the previous aligned window's count. `check`,
 * `charge` and `refund` each read the two windows inline: a shared reader (a reused result
 * object) measured 0–10 % slower per decision at 100k keys.
 */
export const slidingWindowCounter: LimitAlgorithm = {
  size: 3,
  fixed: true,
  check(state, spec, cost, now, out, at = 0) {
    const windowMs = spec.windowMs;
    const limit = spec.limit;
    let index = Math.floor(now / windowMs);
    let previous = 0;
    let current = 0;
    if (index <= state[at]!) {
      index = state[at]!;
      previous = state[at + 1]!;
      current = state[at + 2]!;
    } else if (index === state[at]! + 1) {
      previous = state[at + 2]!;
    }
    const start = index * windowMs;
    let elapsed = (now - start) / windowMs;
    if (elapsed < 0) elapsed = 0;
    const estimate = previous * (1 - elapsed) + current;
    out.remaining = wholeUnits(limit - estimate, limit);
    out.resetMs = current > 0 ? start + 2 * windowMs - now : previous > 0 ? start + windowMs - now : 0;
    if (cost > limit) {
      refuse(out, Infinity);
    } else if (estimate + cost <= limit + slack(limit)) {
      allow(out);
    } else if (current + cost <= limit) {
      // Passes later in this window, once enough of the previous window has slid out.
      refuse(out, start + windowMs * (1 - (limit - current - cost) / previous) - now);
    } else {
      // Passes in the next window, once enough of this window's count has slid out.
      refuse(out, start + windowMs * (2 - (limit - cost) / current) - now);
    }
  },
  charge(state, spec, cost, now, out, at = 0) {
    const windowMs = spec.windowMs;
    const limit = spec.limit;
    let index = Math.floor(now / windowMs);
    let previous = 0;
    let current = 0;
    if (index <= state[at]!) {
      index = state[at]!;
      previous = state[at + 1]!;
      current = state[at + 2]!;
    } else if (index === state[at]! + 1) {
      previous = state[at + 2]!;
    }
    current += cost;
    state[at] = index;
    state[at + 1] = previous;
    state[at + 2] = current;
    const start = index * windowMs;
    let elapsed = (now - start) / windowMs;
    if (elapsed < 0) elapsed = 0;
    out.remaining = wholeUnits(limit - previous * (1 - elapsed) - current, limit);
    const fullAt = start + 2 * windowMs;
    out.resetMs = fullAt - now;
    return fullAt;
  },
  refund(state, spec, cost, now, out, at = 0) {
    const windowMs = spec.windowMs;
    const limit = spec.limit;
    let index = Math.floor(now / windowMs);
    let previous = 0;
    let current = 0;
    if (index <= state[at]!) {
      index = state[at]!;
      previous = state[at + 1]!;
      current = state[at + 2]!;
    } else if (index === state[at]! + 1) {
      previous = state[at + 2]!;
    }
    // The refunded units were charged most recently: take them from this window first.
    if (current >= cost) {
      current -= cost;
    } else {
      previous = previous > cost - current ? previous - (cost - current) : 0;
      current = 0;
    }
    state[at] = index;
    state[at + 1] = previous;
    state[at + 2] = current;
    const start = index * windowMs;
    let elapsed = (now - start) / windowMs;
    if (elapsed < 0) elapsed = 0;
    out.remaining = wholeUnits(limit - previous * (1 - elapsed) - current, limit);
    const fullAt = current > 0 ? start + 2 * windowMs : previous > 0 ? start + windowMs : now;
    out.resetMs = fullAt - now;
    return fullAt;
  },
};

/*
 * Sliding window log. State: [head, count, ring...] — a ring of one timestamp per admitted unit,
 * oldest at `head`; an entry `t` is live while t > now − window. The ring grows on demand up to
 * `limit` entries (8 bytes each), so memory is O(limit) per key. `check` skips expired entries
 * without removing them; `charge` and `refund` drop them.
 */
function expiredCount(state: ArrayLike<number>, windowMs: number, now: number): number {
  const capacity = state.length - 2;
  const head = state[0]!;
  const count = state[1]!;
  const horizon = now - windowMs;
  let expired = 0;
  while (expired < count && state[2 + ((head + expired) % capacity)]! <= horizon) expired++;
  return expired;
}

/** Drops expired entries; returns the live count. */
function prune(state: number[], windowMs: number, now: number): number {
  const count = state[1]!;
  if (count === 0) return 0;
  const expired = expiredCount(state, windowMs, now);
  if (expired > 0) {
    state[0] = (state[0]! + expired) % (state.length - 2);
    state[1] = count - expired;
  }
  return count - expired;
}

/** Re-lays the ring out from index 0 with room for `capacity` entries. Rare: the ring doubles. */
function grow(state: number[], capacity: number): void {
  const oldCapacity = state.length - 2;
  const head = state[0]!;
  const count = state[1]!;
  const live: number[] = [];
  for (let i = 0; i < count; i++) live.push(state[2 + ((head + i) % oldCapacity)]!);
  // Truncated then pushed to, not lengthened: the array stays packed (holes would make every
  // read of every log slower, as element reads see arrays of several kinds).
  state.length = 2;
  for (let i = 0; i < capacity; i++) state.push(i < count ? live[i]! : 0);
  state[0] = 0;
}

/** Sliding window log: exact, one timestamp per admitted unit, at most `limit` per key. */
export const slidingWindowLog: LimitAlgorithm = {
  size: 2,
  fixed: false,
  check(state, spec, cost, now, out) {
    const windowMs = spec.windowMs;
    const limit = spec.limit;
    const capacity = state.length - 2;
    const head = state[0]!;
    const total = state[1]!;
    const expired = expiredCount(state, windowMs, now);
    const count = total - expired;
    out.remaining = limit > count ? limit - count : 0;
    out.resetMs = count > 0 ? state[2 + ((head + total - 1) % capacity)]! + windowMs - now : 0;
    if (cost > limit) {
      refuse(out, Infinity);
    } else if (count + cost <= limit) {
      allow(out);
    } else {
      // The call passes once the oldest `count + cost − limit` live entries have expired.
      const oldestToExpire = state[2 + ((head + expired + count + cost - limit - 1) % capacity)]!;
      refuse(out, oldestToExpire + windowMs - now);
    }
  },
  charge(state: number[], spec, cost, now, out) {
    const windowMs = spec.windowMs;
    const count = prune(state, windowMs, now);
    const needed = count + cost;
    let capacity = state.length - 2;
    if (needed > capacity) {
      capacity = capacity * 2 > 4 ? capacity * 2 : 4;
      if (capacity > spec.limit) capacity = spec.limit;
      if (capacity < needed) capacity = needed;
      grow(state, capacity);
    }
    const head = state[0]!;
    let stamp = now;
    if (count > 0) {
      const newest = state[2 + ((head + count - 1) % capacity)]!;
      if (newest > stamp) stamp = newest;
    }
    for (let i = 0; i < cost; i++) state[2 + ((head + count + i) % capacity)] = stamp;
    state[1] = needed;
    const left = spec.limit - needed;
    out.remaining = left > 0 ? left : 0;
    out.resetMs = stamp + windowMs - now;
    return stamp + windowMs;
  },
  refund(state: number[], spec, cost, now, out) {
    const windowMs = spec.windowMs;
    const count = prune(state, windowMs, now);
    // The refunded units were charged most recently: drop the newest entries.
    const kept = count > cost ? count - cost : 0;
    state[1] = kept;
    const fullAt = kept > 0 ? state[2 + ((state[0]! + kept - 1) % (state.length - 2))]! + windowMs : now;
    const left = spec.limit - kept;
    out.remaining = left > 0 ? left : 0;
    out.resetMs = fullAt - now;
    return fullAt;
  },
};

/** The algorithms by name. */
export const ALGORITHMS: Readonly<Record<RateLimitAlgorithm, LimitAlgorithm>> = Object.freeze({
  'token-bucket': tokenBucket,
  gcra,
  'fixed-window': fixedWindow,
  'sliding-window-counter': slidingWindowCounter,
  'sliding-window-log': slidingWindowLog,
});
