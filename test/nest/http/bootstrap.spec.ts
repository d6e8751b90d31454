// Bad configuration fails when the application starts, with a message naming the class, the
// method, the decorator and the option.
import { Controller, Get, type Type } from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import {
  Bulkhead,
  CircuitBreaker,
  Fallback,
  InvalidOptionError,
  RateLimit,
  ResilienceModule,
  Retry,
  Timeout,
  UseResilience,
  type ResilienceModuleOptions,
} from 'nest-resilience';
import { bootstrapError, PLATFORMS } from './support/app.js';

function ordersController(decorator: MethodDecorator): Type<unknown> {
  @Controller('orders')
  class OrdersController {
    @Get()
    @decorator
    list() {
      return [];
    }
  }
  return OrdersController;
}

const policies: ResilienceModuleOptions['policies'] = { payments: { retry: { maxAttempts: 2 } } };

const cases: Array<[string, MethodDecorator, RegExp]> = [
  [
    'an unknown policy name',
    CircuitBreaker('nope'),
    /^@CircuitBreaker on OrdersController\.list: invalid option "policy": got "nope"; expected one of the named policies: payments/,
  ],
  [
    'a policy without that pattern',
    Bulkhead('payments'),
    /^@Bulkhead on OrdersController\.list: invalid option "policy": got "payments"; expected a policy that defines bulkhead/,
  ],
  ['an unknown policy in @UseResilience', UseResilience('nope'), /^@UseResilience on OrdersController\.list: invalid option "policy": got "nope"/],
  ['an unknown policy in @Timeout', Timeout('nope'), /^@Timeout on OrdersController\.list: invalid option "policy": got "nope"/],
  ['a negative limit', RateLimit({ limit: -1, window: '1m' }), /^@RateLimit on OrdersController\.list: invalid option "rateLimit\.limit": got -1; expected/],
  [
    'a negative limit among several',
    RateLimit([{ limit: 10, window: '1s' }, { limit: -1, window: '1h' }]),
    /^@RateLimit on OrdersController\.list: invalid option "rateLimit\[1\]\.limit": got -1/,
  ],
  ['maxAttempts < 1', Retry({ maxAttempts: 0 }), /^@Retry on OrdersController\.list: invalid option "retry\.maxAttempts": got 0; expected/],
  [
    '@Fallback naming a missing method',
    Fallback('missingMethod'),
    /^@Fallback on OrdersController\.list: invalid option "fallback": got "missingMethod"; expected the name of a method of OrdersController/,
  ],
  [
    'an unknown option key',
    Bulkhead({ maxConcurent: 2 } as never),
    /^@Bulkhead on OrdersController\.list: invalid option "bulkhead\.maxConcurent"/,
  ],
  ['an unknown rate-limit option key', RateLimit({ limit: 5, windw: '1s' } as never), /^@RateLimit on OrdersController\.list: invalid option "rateLimit\.windw"/],
  ['a zero timeout', Timeout(0), /^@Timeout on OrdersController\.list: invalid option "timeout(\.duration)?": got 0/],
  [
    'a negative failure threshold',
    CircuitBreaker({ failureRateThreshold: -5 }),
    /^@CircuitBreaker on OrdersController\.list: invalid option "circuitBreaker\.failureRateThreshold": got -5/,
  ],
];

describe.each(PLATFORMS)('bootstrap errors over %s', (platform) => {
  it.each(cases)('%s', async (_name, decorator, message) => {
    const error = await bootstrapError(platform, {
      imports: [ResilienceModule.forRoot({ policies })],
      controllers: [ordersController(decorator)],
    });
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error.message).toMatch(message);
  });

  it('an invalid named policy fails with the policy and the option named', async () => {
    const error = await bootstrapError(platform, {
      imports: [ResilienceModule.forRoot({ policies: { payments: { retry: { maxAttempts: 0 } } } })],
      controllers: [ordersController(Retry('payments'))],
    });
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error.message).toMatch(/policy "payments".*invalid option "retry\.maxAttempts": got 0/);
  });

  it('an unknown pattern in a named policy fails', async () => {
    const error = await bootstrapError(platform, {
      imports: [ResilienceModule.forRoot({ policies: { payments: { retyr: { maxAttempts: 2 } } as never } })],
      controllers: [ordersController(Retry())],
    });
    expect(error.message).toMatch(/invalid option "policies\.payments\.retyr"/);
  });

  it('an invalid globalRateLimit fails', async () => {
    const error = await bootstrapError(platform, {
      imports: [ResilienceModule.forRoot({ globalRateLimit: { limit: 0 } })],
      controllers: [ordersController(Retry())],
    });
    expect(error.message).toMatch(/globalRateLimit.*invalid option "rateLimit\.limit": got 0/);
  });
});
