import { Injectable } from '@nestjs/common';
import { Fallback, getAbortSignal, Hedge, Timeout, UseResilience } from 'nest-resilience';
import { SupplierService, type SupplierBehaviour } from './supplier.service.js';

/** A price as the API returns it. */
export interface Quote {
  symbol: string;
  price: number | null;
  currency: 'USD';
  /** `'live'` from the supplier, `'fallback'` from the last known price (or none). */
  source: 'live' | 'fallback';
  /** Why the fallback answered: the name of the error it replaced. */
  reason?: string;
}

/**
 * The client of the supplier, protected on the provider side: every pattern of the named policy
 * `supplier` (circuit breaker, retry, timeout, bulkhead), and a fallback to the last known price.
 * The decorators wrap `quote` once at bootstrap; callers just call it.
 */
@Injectable()
export class QuoteService {
  private readonly lastKnown = new Map<string, number>();

  constructor(private readonly supplier: SupplierService) {}

  @UseResilience('supplier')
  @Fallback('lastKnownQuote')
  async quote(symbol: string, behaviour: SupplierBehaviour): Promise<Quote> {
    // The signal fires when this attempt's timeout expires, so the supplier stops waiting.
    const price = await this.supplier.price(symbol, behaviour, getAbortSignal());
    this.lastKnown.set(symbol, price);
    return { symbol, price, currency: 'USD', source: 'live' };
  }

  /**
   * A quote for latency-sensitive callers: when the supplier has not answered within 150 ms, a
   * second request goes out (drawing on the `supplier` retry budget); the first answer wins and
   * the other request is aborted through its signal.
   */
  @Hedge({ delay: '150ms', maxHedges: 1, budget: 'supplier' })
  @Timeout('1s')
  async fastQuote(symbol: string, behaviour: SupplierBehaviour): Promise<Quote> {
    const price = await this.supplier.price(symbol, behaviour, getAbortSignal());
    return { symbol, price, currency: 'USD', source: 'live' };
  }

  /** The fallback of `quote`: called with the error, then the same arguments. */
  lastKnownQuote(error: unknown, symbol: string): Quote {
    return {
      symbol,
      price: this.lastKnown.get(symbol) ?? null,
      currency: 'USD',
      source: 'fallback',
      reason: error instanceof Error ? error.name : 'Error',
    };
  }
}
