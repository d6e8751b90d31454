/**
 * The outcomes a breaker has recorded: running totals over a sliding window, updated in O(1)
 * per recorded call (amortised for time windows), with no timer.
 */
export interface SlidingWindow {
  /** Recorded calls (successes and failures; ignored calls are never recorded). */
  readonly calls: number;
  /** Recorded failures. */
  readonly failures: number;
  /** Recorded slow calls, successful or not. */
  readonly slowCalls: number;
  /** Records one outcome at time `now`. */
  record(now: number, failure: boolean, slow: boolean): void;
  /** Forgets what has left the window by time `now` (a no-op for count windows). */
  advance(now: number): void;
  /** Forgets everything. */
  clear(): void;
}

const FAILURE = 1;
const SLOW = 2;

/** The last `size` calls, as a ring of flag bytes with running totals. */
export class CountWindow implements SlidingWindow {
  calls = 0;
  failures = 0;
  slowCalls = 0;
  private readonly ring: Uint8Array;
  private head = 0;

  constructor(private readonly size: number) {
    this.ring = new Uint8Array(size);
  }

  record(_now: number, failure: boolean, slow: boolean): void {
    const ring = this.ring;
    const head = this.head;
    if (this.calls === this.size) {
      const evicted = ring[head];
      this.failures -= evicted & FAILURE;
      this.slowCalls -= evicted >> 1;
    } else {
      this.calls++;
    }
    let flags = 0;
    if (failure) {
      flags = FAILURE;
      this.failures++;
    }
    if (slow) {
      flags |= SLOW;
      this.slowCalls++;
    }
    ring[head] = flags;
    this.head = head + 1 === this.size ? 0 : head + 1;
  }

  advance(): void {}

  clear(): void {
    this.calls = 0;
    this.failures = 0;
    this.slowCalls = 0;
    this.head = 0;
  }
}

/**
 * The calls of the last `duration` ms, in `buckets` buckets of `duration / buckets` ms each,
 * aligned on multiples of the bucket width. The window holds the current bucket and the
 * `buckets − 1` before it, so a call is forgotten between `duration − width` and `duration`
 * after it was recorded. Buckets are rotated lazily, when the window is next touched.
 */
export class TimeWindow implements SlidingWindow {
  calls = 0;
  failures = 0;
  slowCalls = 0;
  private readonly bucketCalls: Uint32Array;
  private readonly bucketFailures: Uint32Array;
  private readonly bucketSlow: Uint32Array;
  private readonly width: number;
  private headEpoch = -Infinity;
  private headIndex = 0;

  constructor(
    duration: number,
    private readonly buckets: number,
  ) {
    this.width = duration / buckets;
    this.bucketCalls = new Uint32Array(buckets);
    this.bucketFailures = new Uint32Array(buckets);
    this.bucketSlow = new Uint32Array(buckets);
  }

  record(now: number, failure: boolean, slow: boolean): void {
    this.advance(now);
    const index = this.headIndex;
    this.bucketCalls[index]++;
    this.calls++;
    if (failure) {
      this.bucketFailures[index]++;
      this.failures++;
    }
    if (slow) {
      this.bucketSlow[index]++;
      this.slowCalls++;
    }
  }

  advance(now: number): void {
    const epoch = Math.floor(now / this.width);
    // A clock read earlier than the head (it never goes backwards in production) lands in the head bucket.
    if (epoch <= this.headEpoch) return;
    const steps = epoch - this.headEpoch;
    this.headEpoch = epoch;
    if (steps >= this.buckets) {
      this.clearBuckets();
      return;
    }
    let index = this.headIndex;
    for (let step = 0; step < steps; step++) {
      index = index + 1 === this.buckets ? 0 : index + 1;
      this.calls -= this.bucketCalls[index];
      this.failures -= this.bucketFailures[index];
      this.slowCalls -= this.bucketSlow[index];
      this.bucketCalls[index] = 0;
      this.bucketFailures[index] = 0;
      this.bucketSlow[index] = 0;
    }
    this.headIndex = index;
  }

  clear(): void {
    this.clearBuckets();
  }

  private clearBuckets(): void {
    this.calls = 0;
    this.failures = 0;
    this.slowCalls = 0;
    this.bucketCalls.fill(0);
    this.bucketFailures.fill(0);
    this.bucketSlow.fill(0);
  }
}
