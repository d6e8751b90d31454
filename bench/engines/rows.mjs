// Each row builds the function to measure: one call through a policy around `async () => 1`.
// Rows run in a child process each (see run.mjs), so one row's JIT state never affects another.
// BENCH_DIST names another build of the library to measure (e.g. an earlier commit's dist).
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const ours = await import(process.env.BENCH_DIST ? pathToFileURL(resolve(process.env.BENCH_DIST, 'index.js')).href : '../../dist/index.js');

const task = async () => 1;
const reading = async (context) => (context.signal.aborted ? 0 : 1);

/** Rate limit, fallback, retry, breaker, timeout and bulkhead, as `@RateLimit` … `@Bulkhead` compose them. */
function pipelineOfSix(maxConcurrent) {
  return new ours.Pipeline({
    rateLimit: new ours.RateLimitPolicy({ limit: 1e12, window: '1h' }),
    fallback: new ours.FallbackPolicy({ value: 0 }),
    retry: new ours.RetryPolicy({ maxAttempts: 3 }),
    circuitBreaker: new ours.CircuitBreakerPolicy({}),
    timeout: new ours.TimeoutPolicy(10_000),
    bulkhead: new ours.BulkheadPolicy({ maxConcurrent }),
  });
}

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
    const pipeline = pipelineOfSix(10);
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

// Calls that overlap, as in a service under load: one batch starts `IN_FLIGHT` calls whose tasks
// all wait on one promise, then releases them. Per call: the batch's time ÷ IN_FLIGHT; the bare
// row is the same batch without a policy, measured in the same process.
export const IN_FLIGHT = 100;
function inFlight(run) {
  return async () => {
    let open;
    const gate = new Promise((settle) => (open = settle));
    const wait = () => gate;
    const calls = [];
    for (let i = 0; i < IN_FLIGHT; i++) calls.push(run(wait));
    open(1);
    await Promise.all(calls);
  };
}
export const BARE_IN_FLIGHT = `bare: ${IN_FLIGHT} calls in flight`;
export const inFlightRows = {
  [BARE_IN_FLIGHT]: async () => inFlight((fn) => fn()),
  [`ours: timeout (${IN_FLIGHT} in flight)`]: async () => {
    const policy = new ours.TimeoutPolicy(10_000);
    return inFlight((fn) => policy.execute(fn));
  },
  [`cockatiel: timeout (${IN_FLIGHT} in flight)`]: async () => {
    const { timeout, TimeoutStrategy } = await cockatiel();
    const policy = timeout(10_000, TimeoutStrategy.Cooperative);
    return inFlight((fn) => policy.execute(fn));
  },
  [`ours: pipeline of six (${IN_FLIGHT} in flight)`]: async () => {
    const pipeline = pipelineOfSix(IN_FLIGHT);
    return inFlight((fn) => pipeline.execute(fn));
  },
  [`opossum: fire (defaults) (${IN_FLIGHT} in flight)`]: async () => {
    const { default: CircuitBreaker } = await import('opossum');
    const breaker = new CircuitBreaker((fn) => fn(), {});
    return inFlight((fn) => breaker.fire(fn));
  },
};

// Memory rate-limit decisions (synchronous), per algorithm: one hot key, 100k keys in turn (each
// key comes back after the 99,999 others), and 100k keys in random order (no two neighbours in
// memory: every decision meets cold cache lines, as with real clients).
const algorithms = ['token-bucket', 'sliding-window-log', 'sliding-window-counter', 'fixed-window', 'gcra'];
const orders = { 'one key': 1, '100k keys': 100_000, '100k keys, random order': 100_000 };
/** A fixed pseudo-random sequence (xorshift), the same in every run. */
function randomIndexes(length, bound) {
  const indexes = new Uint32Array(length);
  let x = 2_463_534_242;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    indexes[i] = (x >>> 0) % bound;
  }
  return indexes;
}
export const decisionRows = {
  // What every decision pays for reading the policy's clock, whatever the store does.
  'floor: performance.now()': async () => () => performance.now(),
};
for (const algorithm of algorithms) {
  for (const [label, keys] of Object.entries(orders)) {
    decisionRows[`decision: ${algorithm}, ${label}`] = async () => {
      const store = new ours.MemoryStore({ maxKeys: 200_000 });
      // A limit nobody reaches; the log keeps at most `limit` stamps per key, so keep it modest.
      const limit = algorithm === 'sliding-window-log' ? 1_000 : 1e12;
      const policy = new ours.RateLimitPolicy({ algorithm, limit, window: algorithm === 'sliding-window-log' ? '10ms' : '1h' }, { store });
      const names = Array.from({ length: keys }, (_, i) => `client-${i}`);
      // Every key held before measuring: the rows measure decisions, not insertions.
      for (const name of names) policy.decide(name);
      let i = 0;
      if (label.endsWith('random order')) {
        const order = randomIndexes(1 << 20, keys);
        const mask = order.length - 1;
        return () => policy.decide(names[order[i++ & mask]]);
      }
      return () => policy.decide(names[i++ % keys]);
    };
  }
}
