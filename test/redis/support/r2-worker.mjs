// One process of R2: its application clock is `skewMs` off the real time. For each run it floods
// a shared token bucket (or GCRA) through a RateLimitPolicy (which hands the store its skewed
// clock), then, at an agreed moment, peeks at it and reports the reset and Retry-After it got.
const input = JSON.parse(process.env.FLEET_INPUT);
const { RedisStore, SCRIPT_CLOCK, SCRIPT_REPLY } = await import(`${input.libUrl}stores/redis/redis.store.js`);
const { RateLimitPolicy } = await import(`${input.libUrl}policies/rate-limit/rate-limit.policy.js`);

const sleepUntil = (at) => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));
const clock = {
  now: () => Date.now() + input.skewMs,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle),
};

const store = new RedisStore({ url: input.url, keyPrefix: input.prefix, commandTimeout: 5_000 });
await store.init();
let stamps = [];
store[SCRIPT_REPLY] = (reply) => {
  if (reply.allowed) stamps.push(reply.nowMs);
};
const results = [];
for (const run of input.runs) {
  // The control: the same script, but on the application's clock instead of Redis TIME.
  store[SCRIPT_CLOCK] = run.useAppClock ? clock.now : undefined;
  stamps = [];
  const limiter = new RateLimitPolicy({ name: 'bucket', algorithm: run.algorithm, limit: input.limit, window: input.windowMs }, { store, clock });
  await sleepUntil(run.floodStart);
  const end = run.floodStart + input.floodMs;
  let admitted = 0;
  let degraded = 0;
  const loop = async () => {
    while (Date.now() < end) {
      const decision = await limiter.decide(run.key);
      if (decision.degraded !== undefined) degraded++;
      else if (decision.allowed) admitted++;
    }
  };
  await Promise.all(Array.from({ length: input.inflight }, loop));
  await sleepUntil(run.peekAt);
  const peek = await limiter.peek(run.key, input.limit);
  results.push({ admitted, degraded, stamps, peek: { allowed: peek.allowed, retryAfterMs: peek.retryAfterMs, resetMs: peek.limits[0].resetMs } });
}
await store.close();
console.log(JSON.stringify({ skewMs: input.skewMs, results }));
