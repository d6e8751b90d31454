import { Injectable } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Chaos,
  ChaosRegistry,
  CircuitBreaker,
  CircuitBreakerRegistry,
  FakeClock,
  InvalidOptionError,
  isChaosInjectedError,
  ResilienceEvents,
  ResilienceModule,
  ResilienceRegistry,
  Timeout,
  UseResilience,
  type CircuitStateChangeEvent,
  type ResilienceModuleOptions,
} from 'nest-resilience';

// Run-time updates of a named policy (through the registry, or from the fleet with live
// configuration) rebuild only what changed: the state of the rest survives, a chaos policy
// switched off stays off, a handler never loses a pattern it names the policy for, and replaced
// engines leave the event streams.

const opened: TestingModule[] = [];

afterEach(async () => {
  while (opened.length > 0) await opened.pop()!.close();
});

@Injectable()
class Payments {
  @CircuitBreaker('payments')
  @Timeout('payments')
  async charge(): Promise<string> {
    return 'charged';
  }

  @UseResilience('payments')
  @Chaos({ error: { rate: 1 } })
  async refund(): Promise<string> {
    return 'refunded';
  }
}

async function boot(options: ResilienceModuleOptions = {}) {
  const clock = new FakeClock();
  const moduleRef = await Test.createTestingModule({
    imports: [
      ResilienceModule.forRoot({
        clock,
        policies: { payments: { circuitBreaker: { consecutiveFailures: 2, openDuration: '1m' }, timeout: '1s', chaos: { error: { rate: 1 } } } },
        ...options,
      }),
    ],
    providers: [Payments],
  }).compile();
  opened.push(moduleRef);
  await moduleRef.init();
  return {
    payments: moduleRef.get(Payments),
    registry: moduleRef.get(ResilienceRegistry),
    breakers: moduleRef.get(CircuitBreakerRegistry),
    chaos: moduleRef.get(ChaosRegistry),
    events: moduleRef.get(ResilienceEvents),
  };
}

describe('run-time updates of a named policy', () => {
  it('an update that leaves the breaker\'s settings alone keeps the breaker and its state', async () => {
    const { payments, registry, breakers } = await boot();
    breakers.get('payments').forceOpen();
    registry.update('payments', { timeout: '2s' });
    expect(breakers.get('payments').state).toBe('FORCED_OPEN');
    await expect(payments.charge()).rejects.toThrow(/forced open/);
    // Its own settings changed: a new breaker, closed.
    registry.update('payments', { circuitBreaker: { consecutiveFailures: 3 } });
    expect(breakers.get('payments').state).toBe('CLOSED');
    await expect(payments.charge()).resolves.toBe('charged');
  });

  it('a chaos policy switched off at run time stays off across updates, named and inline', async () => {
    const { payments, registry, chaos } = await boot();
    chaos.disable();
    expect(chaos.list().map(({ name, enabled }) => [name, enabled])).toEqual([
      ['payments', false],
      ['Payments.refund', false],
    ]);
    registry.update('payments', { timeout: '2s' });
    await expect(payments.refund()).resolves.toBe('refunded');
    // New faults for the named policy: still switched off, unless the update says `enabled`.
    registry.update('payments', { chaos: { error: { rate: 0.5 } } });
    expect(chaos.get('payments').enabled).toBe(false);
    registry.update('payments', { chaos: { enabled: true } });
    expect(chaos.get('payments').enabled).toBe(true);
    chaos.enable('Payments.refund');
    registry.update('payments', { timeout: '3s' });
    const injected = await payments.refund().catch((error: unknown) => error);
    expect(isChaosInjectedError(injected)).toBe(true);
  });

  it('refuses an update that drops a pattern a handler names the policy for, and changes nothing', async () => {
    const { payments, registry } = await boot();
    let refusal: unknown;
    try {
      // Through apply (what the fleet's live configuration uses): a whole definition, without the breaker.
      registry.apply('payments', { timeout: '1s' }, { origin: 'test' });
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(InvalidOptionError);
    expect((refusal as InvalidOptionError).option).toBe('policies.payments.circuitBreaker');
    expect((refusal as Error).message).toContain("@CircuitBreaker('payments') on Payments.charge");
    expect(registry.get('payments').circuitBreaker).toEqual({ consecutiveFailures: 2, openDuration: '1m' });
    await expect(payments.charge()).resolves.toBe('charged');
    // `@UseResilience` takes what the policy has: dropping chaos from it is fine.
    registry.apply('payments', { circuitBreaker: { consecutiveFailures: 2, openDuration: '1m' }, timeout: '1s' }, { origin: 'test' });
    await expect(payments.charge()).resolves.toBe('charged');
  });

  it('replaced engines leave the event streams: a listener hears the breaker in use, once', async () => {
    const { registry, breakers, events } = await boot();
    const heard: CircuitStateChangeEvent[] = [];
    const subscription = events.onCircuitStateChange((event) => heard.push(event));
    const replaced = [];
    for (let threshold = 3; threshold <= 5; threshold++) {
      replaced.push(breakers.get('payments'));
      registry.update('payments', { circuitBreaker: { consecutiveFailures: threshold } });
    }
    for (const breaker of replaced) breaker.forceOpen();
    expect(heard).toEqual([]);
    breakers.get('payments').forceOpen();
    expect(heard.map(({ breaker, to }) => [breaker, to])).toEqual([['payments', 'FORCED_OPEN']]);
    subscription.dispose();
  });
});
