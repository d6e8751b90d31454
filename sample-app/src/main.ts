import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule, type SampleAppOptions } from './app.module.js';

/**
 * Environment: PORT (default 3000), FAIL_RATE and LATENCY_MS (the supplier's defaults, 0 and 80),
 * ADMIN=1 (mount the admin endpoints), HTTP_ADAPTER=fastify (default express).
 */
async function bootstrap(): Promise<void> {
  const options: SampleAppOptions = {
    admin: process.env.ADMIN === '1' || process.env.ADMIN === 'true',
    supplier: {
      ...(process.env.FAIL_RATE ? { failRate: Number(process.env.FAIL_RATE) } : {}),
      ...(process.env.LATENCY_MS ? { latencyMs: Number(process.env.LATENCY_MS) } : {}),
    },
  };
  const fastify = process.env.HTTP_ADAPTER === 'fastify';
  let app: INestApplication;
  if (fastify) {
    const { FastifyAdapter } = await import('@nestjs/platform-fastify');
    app = await NestFactory.create(AppModule.register(options), new FastifyAdapter());
  } else {
    app = await NestFactory.create(AppModule.register(options));
  }
  app.enableShutdownHooks();
  const port = Number(process.env.PORT ?? 3000);
  await app.listen(port, '127.0.0.1');
  const url = `http://127.0.0.1:${port}`;
  console.log(tryIt(url, fastify ? 'Fastify' : 'Express', options.admin === true));
}

/** The curl lines printed at start, in an order that works top to bottom on a fresh start. */
function tryIt(url: string, platform: string, admin: boolean): string {
  const lines = [
    `nest-resilience sample app listening on ${url} (${platform}, in-memory store)`,
    '',
    'Try, in this order (the supplier takes ?failRate=0..1 and ?latencyMs=):',
    `  curl -s ${url}/quotes                                    # the symbols: @SkipRateLimit, no rate-limit headers`,
    `  curl -i ${url}/quotes/ACME                               # a live quote; RateLimit headers of its two limits (10/s, 60/min)`,
    `  curl -s '${url}/quotes/ACME?latencyMs=2000'              # 3 attempts time out after 500 ms each: @Fallback, last known price`,
    `  curl -s '${url}/quotes/ACME?failRate=1'                  # the supplier circuit is now open: fallback at once, reason CircuitOpenError`,
    `  curl -i '${url}/quotes/ACME/live?latencyMs=3000'         # 504 Gateway Timeout after 2 s (@Timeout)`,
    `  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' '${url}/quotes/GLOBEX/live?latencyMs=600' & done; wait; echo   # @Bulkhead: four 200, two 503`,
    `  for i in 1 2; do curl -s -o /dev/null -w '%{http_code} ' '${url}/quotes/ACME/live?failRate=1'; done; echo   # 502, then 503: the live circuit is open for 15 s`,
    `  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code} ' ${url}/quotes/ACME/history; done; echo   # free plan, 3/min: 200 200 200 429`,
    `  curl -i -H 'x-api-key: pro-demo' ${url}/quotes/ACME/history   # pro plan: 30/min`,
    `  curl -s '${url}/quotes/ACME/fast?latencyMs=400'          # @Hedge: a second supplier request after 150 ms, the first answer wins`,
    `  curl -i -H 'x-request-deadline: 300' '${url}/quotes/ACME/live?latencyMs=1000'   # the caller's 300 ms deadline: 504 after 300 ms, not 2 s`,
    `  curl -s ${url}/resilience                                # breakers, bulkheads, rate limiters, policies, supplier counters`,
  ];
  if (admin) {
    lines.push(
      '',
      'Admin (ADMIN=1):',
      `  curl -s -X POST ${url}/resilience/breakers/QuotesController.live/open    # force the live breaker open`,
      `  curl -i ${url}/quotes/HOOLI/live                                          # 503: refused without calling the supplier`,
      `  curl -s -X POST ${url}/resilience/breakers/QuotesController.live/reset   # closed again`,
      `  curl -s -X POST ${url}/resilience/breakers/supplier/reset                 # the supplier circuit too`,
      `  curl -s -X POST '${url}/resilience/rate-limiters/QuotesController.history/reset?key=127.0.0.1'   # a full history budget again`,
      `  curl -s -X PATCH -H 'content-type: application/json' -d '{"timeout":"3s"}' ${url}/resilience/policies/supplier   # from the next call on`,
      `  curl -s '${url}/quotes/ACME?latencyMs=2000'              # live again: 3 s per attempt now`,
      `  curl -s -X POST ${url}/resilience/chaos/supplier/enable   # rehearse a failing supplier (@Chaos in the supplier policy)`,
      `  curl -s ${url}/quotes/INITECH                            # fallback: reason ChaosInjectedError`,
      `  curl -s -X POST ${url}/resilience/chaos/supplier/disable  # the supplier answers again`,
    );
  } else {
    lines.push('', 'Start with ADMIN=1 to mount the admin endpoints (force a breaker open, reset it, reset a client\'s limit, update a policy).');
  }
  return lines.join('\n');
}

void bootstrap();
