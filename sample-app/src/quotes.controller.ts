import { Controller, Get, NotFoundException, Param, Query, type ExecutionContext } from '@nestjs/common';
import { Bulkhead, CircuitBreaker, getAbortSignal, Priority, RateLimit, Retry, SkipRateLimit, Timeout } from 'nest-resilience';
import { QuoteService, type Quote } from './quote.service.js';
import { SupplierError, SupplierService, SYMBOLS } from './supplier.service.js';

/** Demo API keys and their plans; any other caller is on the free plan, counted by IP. */
export const API_KEYS: Readonly<Record<string, 'free' | 'pro'>> = { 'free-demo': 'free', 'pro-demo': 'pro' };

function apiKeyOf(context: ExecutionContext): string | undefined {
  const header = context.switchToHttp().getRequest<{ headers: Record<string, string | string[] | undefined> }>().headers['x-api-key'];
  const key = Array.isArray(header) ? header[0] : header;
  return key !== undefined && key in API_KEYS ? key : undefined;
}

function planOf(context: ExecutionContext): 'free' | 'pro' {
  const key = apiKeyOf(context);
  return key === undefined ? 'free' : API_KEYS[key]!;
}

type BehaviourQuery = { failRate?: string; latencyMs?: string };

/**
 * The quotes API. Every handler shares the class-level limit of 120 requests a minute per client
 * unless it declares limits of its own (method over class) or opts out.
 */
@Controller('quotes')
@RateLimit({ name: 'per-minute', limit: 120, window: '1m' })
export class QuotesController {
  constructor(
    private readonly quotes: QuoteService,
    private readonly supplier: SupplierService,
  ) {}

  /** The symbols: static and cheap, so not rate-limited. */
  @Get()
  @SkipRateLimit()
  symbols(): { symbols: readonly string[] } {
    return { symbols: SYMBOLS };
  }

  /**
   * A quote through the protected provider (`QuoteService.quote`): retried, timed out and
   * broken by the `supplier` policy, answered from the last known price when all that fails.
   * Two limits per client, both must pass: 10 a second and 60 a minute.
   */
  @Get(':symbol')
  @RateLimit([
    { name: 'per-second', limit: 10, window: '1s' },
    { name: 'per-minute', limit: 60, window: '1m' },
  ])
  quote(@Param('symbol') symbol: string, @Query() query: BehaviourQuery): Promise<Quote> {
    return this.quotes.quote(knownSymbol(symbol), this.supplier.behaviourOf(query));
  }

  /**
   * The same price straight from the supplier, protected on the controller: a breaker of its own
   * (open for 15 s after 3 failures in a row), one retry of supplier errors, 2 s per attempt, and
   * the `supplier` policy's bulkhead, shared with `QuoteService.quote`. No fallback, so failures
   * reach the client: 502 (supplier), 503 (circuit open, bulkhead full), 504 (timeout).
   */
  @Get(':symbol/live')
  @CircuitBreaker({ consecutiveFailures: 3, openDuration: '15s' })
  @Retry({ maxAttempts: 2, backoff: 'constant', delay: '50ms', retryOn: SupplierError })
  @Timeout('2s')
  @Bulkhead('supplier')
  async live(@Param('symbol') symbol: string, @Query() query: BehaviourQuery): Promise<Quote> {
    const known = knownSymbol(symbol);
    const price = await this.supplier.price(known, this.supplier.behaviourOf(query), getAbortSignal());
    return { symbol: known, price, currency: 'USD', source: 'live' };
  }

  /** A hedged quote (`QuoteService.fastQuote`): a second supplier request after 150 ms; 504 after 1 s. */
  @Get(':symbol/fast')
  @Priority('high')
  fast(@Param('symbol') symbol: string, @Query() query: BehaviourQuery): Promise<Quote> {
    return this.quotes.fastQuote(knownSymbol(symbol), this.supplier.behaviourOf(query));
  }

  /**
   * Price history, a heavier query, and the first to go under overload (`@Priority('low')`): limited per API key by plan (a tier function), 3 a minute on
   * the free plan, 30 on the pro plan. Callers without a known key are counted by IP.
   */
  @Get(':symbol/history')
  @Priority('low')
  @RateLimit({ name: 'history', limit: (context) => (planOf(context) === 'pro' ? 30 : 3), window: '1m', key: (context) => apiKeyOf(context) })
  history(@Param('symbol') symbol: string, @Query('days') days?: string): { symbol: string; days: number; closes: number[] } {
    const known = knownSymbol(symbol);
    const count = Math.min(30, Math.max(1, Number(days ?? 5) || 5));
    const base = known.length * 37;
    return { symbol: known, days: count, closes: Array.from({ length: count }, (_, index) => Math.round((base + 3 * Math.sin(index)) * 100) / 100) };
  }
}

function knownSymbol(symbol: string): string {
  const upper = symbol.toUpperCase();
  if (!(SYMBOLS as readonly string[]).includes(upper)) throw new NotFoundException(`Unknown symbol ${symbol}; try one of ${SYMBOLS.join(', ')}`);
  return upper;
}
