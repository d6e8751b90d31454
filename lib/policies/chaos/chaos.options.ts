import type { PolicyDependencies } from '../../core/dependencies.js';
import type { Duration } from '../../core/duration.js';

/** Delays calls before they reach the method, as a slow dependency would. */
export interface ChaosLatencyOptions {
  /** Share of calls delayed, between 0 and 1. */
  rate: number;
  /**
   * How long a delayed call waits (at most 2³¹−1 ms): a duration, or `[min, max]` for a delay
   * drawn uniformly between the two.
   */
  delay: Duration | readonly [Duration, Duration];
}

/** Fails calls without running the method, as a dependency that answers with an error would. */
export interface ChaosErrorOptions {
  /** Share of calls failed, between 0 and 1; with `abort.rate`, at most 1 in all. */
  rate: number;
  /**
   * What a failed call rejects with: a value (the same one every time), or a function called
   * for each failure that returns it (`() => new BadGatewayException()`); a class must be wrapped
   * in such a function. @default a {@link ChaosInjectedError}
   */
  error?: unknown;
}

/** Aborts calls while the method runs, as a dropped connection would. */
export interface ChaosAbortOptions {
  /** Share of calls aborted, between 0 and 1; with `error.rate`, at most 1 in all. */
  rate: number;
}

/**
 * Faults a chaos policy injects. Latency is decided on its own and comes first; then a call gets
 * at most one of an abort and an error, so each fault's `rate` is its share of all calls.
 */
export interface ChaosOptions {
  /**
   * Whether faults are injected. In production (`NODE_ENV=production`) a policy is built
   * disabled whatever this says unless production use is allowed explicitly. @default true
   */
  enabled?: boolean;
  /** Delays a share of calls before the method runs. @default no latency */
  latency?: ChaosLatencyOptions;
  /** Fails a share of calls without running the method. @default no error */
  error?: ChaosErrorOptions;
  /**
   * Aborts a share of calls while the method runs (at the end of the turn it starts in): its
   * `AbortSignal` fires, and the caller gets an `OperationAbortedError` once the method settles.
   * @default no abort
   */
  abort?: ChaosAbortOptions;
}

/** Module-wide settings of fault injection (`ResilienceModule.forRoot({ chaos })`). */
export interface ChaosModuleOptions {
  /**
   * Lets chaos policies inject faults when `NODE_ENV` is `production`; without it they are built
   * disabled there and `enable()` throws. @default false
   */
  allowInProduction?: boolean;
}

/** What a chaos policy gets from outside besides its options. */
export interface ChaosDependencies extends PolicyDependencies {
  /** Whether the process runs in production. @default process.env.NODE_ENV === 'production' */
  production?: boolean;
  /** Lets the policy inject faults in production. @default false */
  allowInProduction?: boolean;
}

/** A chaos policy's counters since it was built. */
export interface ChaosStats {
  /** Calls made while the policy was enabled. */
  calls: number;
  /** Calls delayed. */
  latency: number;
  /** Calls failed with the configured error. */
  errors: number;
  /** Calls aborted. */
  aborts: number;
}

/** A fault a chaos policy injects. */
export type ChaosFault = 'latency' | 'error' | 'abort';
