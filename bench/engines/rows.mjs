// Each row builds the function to measure: one call through a policy around `async () => 1`.
// Rows run in a child process each (see run.mjs), so one row's JIT state never affects another.
import * as ours from '../../dist/index.js';

const task = async () => 1;
const reading = async (context) => (context.signal.aborted ? 0 : 1);

async function cockatiel() {
  return import('cockatiel');
}

export const rows = {
  'bare await fn()': async () => () => task(),

  'ours: timeout': async () => {
    const policy = new ours.TimeoutPolicy(10_000);
    return () => policy.execute(task);
  },
  'ours: timeout (task reads the signal)': async () => {
    const policy = new ours.TimeoutPolicy(10_000);
    return () => policy.execute(reading);
  },
  'ours: retry': async () => {
    const policy = new ours.RetryPolicy({ maxAttempts: 3 });
    return () => policy.execute(task);
  },
  'ours: circuit breaker': async () => {
    const policy = new ours.CircuitBreakerPolicy({ windowSize: 100, minimumCalls: 10 });
    return () => policy.execute(task);
  },
  'ours: bulkhead': async () => {
    const policy = new ours.BulkheadPolicy({ maxConcurrent: 10 });
    return () => policy.execute(task);
  },
  'ours: fallback': async () => {
    const policy = new ours.FallbackPolicy({ value: 0 });
    return () => policy.execute(task);
  },
  'ours: rate limit (memory, one key)': async () => {
    const policy = new ours.RateLimitPolicy({ limit: 1e12, window: '1h' });
    return () => policy.execute(task);
  },
  'ours: pipeline of four (retry, breaker, timeout, bulkhead)': async () => {
    const pipeline = new ours.Pipeline({
      retry: new ours.RetryPolicy({ maxAttempts: 3 }),
      circuitBreaker: new ours.CircuitBreakerPolicy({}),
      timeout: new ours.TimeoutPolicy(10_000),
      bulkhead: new ours.BulkheadPolicy({ maxConcurrent: 10 }),
    });
    return () => pipeline.execute(task);
  },
  'ours: pipeline of six': async () => {
    const pipeline = new ours.Pipeline({
      rateLimit: new ours.RateLimitPolicy({ limit: 1e12, window: '1h' }),
      fallback: new ours.FallbackPolicy({ value: 0 }),
      retry: new ours.RetryPolicy({ maxAttempts: 3 }),
      circuitBreaker: new ours.CircuitBreakerPolicy({}),
      timeout: new ours.TimeoutPolicy(10_000),
      bulkhead: new ours.BulkheadPolicy({ maxConcurrent: 10 }),
    });
    return () => pipeline.execute(task);
  },

  'cockatiel: timeout': async () => {
    const { timeout, TimeoutStrategy } = await cockatiel();
    const policy = timeout(10_000, TimeoutStrategy.Cooperative);
    return () => policy.execute(task);
  },
  'cockatiel: retry': async () => {
    const { retry, handleAll, ExponentialBackoff } = await cockatiel();
    const policy = retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() });
    return () => policy.execute(task);
  },
  'cockatiel: circuit breaker': async () => {
    const { circuitBreaker, handleAll, SamplingBreaker } = await cockatiel();
    const policy = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new SamplingBreaker({ threshold: 0.5, duration: 60_000, minimumRps: 10 }) });
    return () => policy.execute(task);
  },
  'cockatiel: bulkhead': async () => {
    const { bulkhead } = await cockatiel();
    const policy = bulkhead(10, 0);
    return () => policy.execute(task);
  },
  'cockatiel: wrap of four (retry, breaker, timeout, bulkhead)': async () => {
    const { wrap, retry, circuitBreaker, timeout, bulkhead, handleAll, ExponentialBackoff, SamplingBreaker, TimeoutStrategy } = await cockatiel();
    const policy = wrap(
      retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() }),
      circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new SamplingBreaker({ threshold: 0.5, duration: 60_000, minimumRps: 10 }) }),
      timeout(10_000, TimeoutStrategy.Cooperative),
      bulkhead(10, 0),
    );
    return () => policy.execute(task);
  },
  'opossum: fire (defaults)': async () => {
    const { default: CircuitBreaker } = await import('opossum');
    const breaker = new CircuitBreaker(task, {});
    return () => breaker.fire();
  },
  'opossum: fire (timeout off)': async () => {
    const { default: CircuitBreaker } = await import('opossum');
    const breaker = new CircuitBreaker(task, { timeout: false });
    return () => breaker.fire();
  },
};

// Memory rate-limit decisions (synchronous), per algorithm, on one hot key and over 100k keys.
const algorithms = ['token-bucket', 'sliding-window-log', 'sliding-window-counter', 'fixed-window', 'gcra'];
export const decisionRows = {};
for (const algorithm of algorithms) {
  for (const keys of [1, 100_000]) {
    decisionRows[`decision: ${algorithm}, ${keys === 1 ? 'one key' : '100k keys'}`] = async () => {
      const store = new ours.MemoryStore({ maxKeys: 200_000 });
      // A limit nobody reaches; the log keeps at most `limit` stamps per key, so keep it modest.
      const limit = algorithm === 'sliding-window-log' ? 1_000 : 1e12;
      const policy = new ours.RateLimitPolicy({ algorithm, limit, window: algorithm === 'sliding-window-log' ? '10ms' : '1h' }, { store });
      const names = Array.from({ length: keys }, (_, i) => `client-${i}`);
      let i = 0;
      return () => policy.decide(names[i++ % keys]);
    };
  }
}
