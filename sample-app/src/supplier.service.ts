import { BadGatewayException, BadRequestException, Inject, Injectable } from '@nestjs/common';
import type { Clock } from 'nest-resilience';

/** The time source shared by the downstream and the resilience policies (tests pass a FakeClock). */
export const CLOCK = Symbol('sample-app:clock');
/** How the downstream behaves when a request does not say otherwise. */
export const SUPPLIER_DEFAULTS = Symbol('sample-app:supplier-defaults');

/** How the simulated supplier behaves for one call. */
export interface SupplierBehaviour {
  /** Probability (0–1) that a call fails with a {@link SupplierError}. */
  failRate: number;
  /** How long a call takes, in milliseconds. */
  latencyMs: number;
}

/** The symbols the supplier quotes. */
export const SYMBOLS = ['ACME', 'GLOBEX', 'INITECH', 'HOOLI', 'UMBRELLA'] as const;

/** The supplier failed: a 502 for the client, and a failure for the circuit breaker. */
export class SupplierError extends BadGatewayException {
  constructor(symbol: string) {
    super(`The price supplier failed to quote ${symbol} (simulated)`);
  }
}

/**
 * The deliberately flaky, slow downstream: an in-process stand-in for a remote price supplier.
 * Each call waits `latencyMs` on the shared clock, then fails with probability `failRate`. It
 * stops waiting as soon as the caller's `AbortSignal` fires, like `fetch` does.
 */
@Injectable()
export class SupplierService {
  private calls = 0;
  private failures = 0;
  private aborted = 0;
  private inFlight = 0;

  constructor(
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(SUPPLIER_DEFAULTS) readonly defaults: SupplierBehaviour,
  ) {}

  /**
   * The behaviour asked for by a request's query string (`?failRate=0.5&latencyMs=300`), over
   * the defaults. @throws BadRequestException for values out of range.
   */
  behaviourOf(query: { failRate?: unknown; latencyMs?: unknown }): SupplierBehaviour {
    return {
      failRate: numberParam('failRate', query.failRate, this.defaults.failRate, 0, 1),
      latencyMs: numberParam('latencyMs', query.latencyMs, this.defaults.latencyMs, 0, 60_000),
    };
  }

  /** Quotes a price, slowly and unreliably. */
  async price(symbol: string, behaviour: SupplierBehaviour, signal?: AbortSignal): Promise<number> {
    this.calls++;
    this.inFlight++;
    try {
      if (behaviour.latencyMs > 0) await this.sleep(behaviour.latencyMs, signal);
      if (Math.random() < behaviour.failRate) {
        this.failures++;
        throw new SupplierError(symbol);
      }
      return priceOf(symbol, this.clock.now());
    } finally {
      this.inFlight--;
    }
  }

  /** Counters, shown by GET /resilience. */
  stats(): { calls: number; failures: number; aborted: number; inFlight: number; defaults: SupplierBehaviour } {
    return { calls: this.calls, failures: this.failures, aborted: this.aborted, inFlight: this.inFlight, defaults: this.defaults };
  }

  private sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        this.aborted++;
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        this.clock.clearTimeout(timer);
        this.aborted++;
        reject(signal!.reason);
      };
      const timer = this.clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** A plausible price: a fixed base per symbol and a slow drift over time. */
function priceOf(symbol: string, now: number): number {
  let base = 0;
  for (const char of symbol) base = (base * 31 + char.charCodeAt(0)) % 900;
  return Math.round((100 + base + 5 * Math.sin(now / 60_000)) * 100) / 100;
}

function numberParam(name: string, raw: unknown, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) throw new BadRequestException(`${name} must be a number between ${min} and ${max}`);
  return value;
}
