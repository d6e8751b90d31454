import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import type { PolicyDependencies } from '../../core/dependencies.js';
import { toMilliseconds } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { EventSource, type Event } from '../../core/events.js';
import { functionOption, rejectUnknownOptions } from '../../core/validate.js';
import type { LoadSheddingOptions } from './load-shedding.options.js';

/**
 * How overloaded the application is: 0 none; at level `n` ≥ 1 calls of priority below `n` are
 * shed (1: `'low'`, 2: also `'normal'`, 3: everything below `'critical'`).
 */
export type OverloadLevel = 0 | 1 | 2 | 3;

/** Emitted when the overload level changes. */
export interface OverloadChangeEvent {
  /** The new level. */
  level: OverloadLevel;
  /** The level before. */
  previous: OverloadLevel;
  /** The delay read by the sample that changed the level, in milliseconds (the last reading when the detector closed). */
  delayMs: number;
}

/** The detector's options after validation: durations in milliseconds. */
export interface ResolvedLoadSheddingOptions {
  /** The first threshold, in milliseconds. */
  readonly eventLoopDelay: number;
  /** Milliseconds between readings. */
  readonly sampleInterval: number;
  /** Milliseconds, the `retryAfterMs` of a shed call. */
  readonly retryAfter: number;
  /** The custom delay source, if any. */
  readonly delaySource: (() => number) | undefined;
}

const KNOWN_OPTIONS = ['eventLoopDelay', 'sampleInterval', 'retryAfter', 'delaySource'] as const;

/**
 * Watches the event-loop delay and says which priorities to shed: one per application, shared by
 * every load-shedding policy. A timer reads the delay every `sampleInterval` and updates a cached
 * level; {@link admits} only compares against it, so a call pays no syscall and no histogram read.
 *
 * The level rises as soon as a reading crosses a threshold (`eventLoopDelay`, twice it, four times
 * it) and falls by one step per reading. Nothing is measured and nothing is shed until
 * {@link start}; after {@link close} every call is admitted again.
 *
 * @example
 * const detector = new OverloadDetector({ eventLoopDelay: '50ms' });
 * detector.start();
 * const shedding = new LoadSheddingPolicy({ priority: 'low' }, detector);
 */
export class OverloadDetector {
  /** The resolved options. */
  readonly options: ResolvedLoadSheddingOptions;
  /** The `Retry-After` of a shed call, in milliseconds. */
  readonly retryAfterMs: number;

  private readonly clock: Clock;
  private readonly threshold: number;
  private readonly interval: number;
  private readonly source: (() => number) | undefined;
  /** Milliseconds the histogram adds to every reading: its own timer's period. */
  private readonly resolution: number;
  private histogram: IntervalHistogram | undefined = undefined;
  private timer: TimerHandle | undefined = undefined;
  private scheduledAt = 0;
  private running = false;
  private closed = false;
  private warned = false;
  private current: OverloadLevel = 0;
  /** Calls of a priority below it are shed: `-Infinity` at level 0, else the level. */
  private floor = -Infinity;
  private lastDelay = 0;

  private readonly changes = new EventSource<OverloadChangeEvent>();
  /** Subscribes to level changes (including the return to 0 on {@link close}). */
  readonly onOverload: Event<OverloadChangeEvent> = this.changes.event;

  private readonly tick = (): void => this.sample();

  /**
   * @param options see {@link LoadSheddingOptions}; every field is optional.
   * @param dependencies the clock of the sampling timer.
   * @throws InvalidOptionError when an option is unknown or out of range.
   */
  constructor(options: LoadSheddingOptions = {}, dependencies: PolicyDependencies = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('loadShedding', options, 'an options object');
    rejectUnknownOptions(options, KNOWN_OPTIONS, '');
    const eventLoopDelay = toMilliseconds(options.eventLoopDelay ?? 100, 'eventLoopDelay', { allowZero: false });
    const sampleInterval = toMilliseconds(options.sampleInterval ?? 500, 'sampleInterval', { allowZero: false, timer: true });
    if (sampleInterval < 1) throw new InvalidOptionError('sampleInterval', options.sampleInterval, 'a duration ≥ 1 ms');
    const retryAfter = toMilliseconds(options.retryAfter ?? 1000, 'retryAfter');
    const delaySource = functionOption<() => number>(options.delaySource, 'delaySource');
    this.options = Object.freeze({ eventLoopDelay, sampleInterval, retryAfter, delaySource });
    this.retryAfterMs = retryAfter;
    this.threshold = eventLoopDelay;
    this.interval = sampleInterval;
    this.source = delaySource;
    // Node's default resolution (10 ms), finer for short windows so each one holds several ticks.
    this.resolution = Math.max(1, Math.min(10, Math.floor(sampleInterval / 5)));
    this.clock = dependencies.clock ?? systemClock;
  }

  /** The current level; see {@link OverloadLevel}. */
  get level(): OverloadLevel {
    return this.current;
  }

  /** The last delay read, in milliseconds (0 before the first reading). */
  get delayMs(): number {
    return this.lastDelay;
  }

  /** Whether a call of this priority may run now: always at level 0, else when `priority` ≥ the level. */
  admits(priority: number): boolean {
    return priority >= this.floor;
  }

  /**
   * Starts sampling: the event-loop histogram (unless a `delaySource` is given) and the sampling
   * timer (a clock timer; the real clock's is `unref`'d). Idempotent; does nothing once closed.
   */
  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    if (this.source === undefined) {
      this.histogram = monitorEventLoopDelay({ resolution: this.resolution });
      this.histogram.enable();
    }
    this.schedule();
  }

  /**
   * Stops sampling for good: clears the timer, disables the histogram and returns the level to 0,
   * so every later call is admitted. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.running = false;
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.histogram?.disable();
    this.histogram = undefined;
    if (this.current !== 0) this.setLevel(0);
  }

  private schedule(): void {
    this.scheduledAt = this.clock.now();
    this.timer = this.clock.setTimeout(this.tick, this.interval);
  }

  private sample(): void {
    this.timer = undefined;
    if (!this.running) return;
    const delay = this.read();
    if (delay !== undefined) this.update(delay);
    this.schedule();
  }

  /** The delay over the window just ended, in milliseconds; `undefined` when there is no usable reading. */
  private read(): number | undefined {
    const source = this.source;
    if (source !== undefined) {
      let value: unknown;
      try {
        value = source();
      } catch (error) {
        this.warnOnce(`the delaySource threw: ${String((error as Error)?.stack ?? error)}`);
        return undefined;
      }
      if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
      this.warnOnce(`the delaySource returned ${String(value)}, not a number of milliseconds ≥ 0`);
      return undefined;
    }
    const histogram = this.histogram!;
    // Every tick of the histogram's timer counts its own period: only what exceeds it is delay.
    const percentile = histogram.count === 0 ? 0 : Math.max(0, histogram.percentile(99) / 1e6 - this.resolution);
    histogram.reset();
    // A reset drops the histogram's next tick, and a loop blocked through the whole window records
    // nothing at all: the sampling timer's own lateness covers both.
    const lateness = this.clock.now() - this.scheduledAt - this.interval;
    return lateness > percentile ? lateness : percentile;
  }

  private update(delay: number): void {
    this.lastDelay = delay;
    const threshold = this.threshold;
    const measured: OverloadLevel = delay > 4 * threshold ? 3 : delay > 2 * threshold ? 2 : delay > threshold ? 1 : 0;
    const previous = this.current;
    // Up at once, down one step per reading: shedding lowers the delay by itself, and letting every
    // priority back in on the first quiet reading would bring the overload straight back.
    const level = measured >= previous ? measured : ((previous - 1) as OverloadLevel);
    if (level !== previous) this.setLevel(level);
  }

  private setLevel(level: OverloadLevel): void {
    const previous = this.current;
    this.current = level;
    this.floor = level === 0 ? -Infinity : level;
    if (this.changes.hasListeners) this.changes.emit({ level, previous, delayMs: this.lastDelay });
  }

  private warnOnce(message: string): void {
    if (this.warned) return;
    this.warned = true;
    process.emitWarning(`nest-resilience: overload detector: ${message}; the level is left as it is`, 'LoadSheddingWarning');
  }
}
