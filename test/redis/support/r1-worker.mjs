// One process of the R1 fleet: floods one key per algorithm with `inflight` concurrent decisions
// through its own RedisStore, then runs the two-round-trip control. Prints one JSON line.
const input = JSON.parse(process.env.FLEET_INPUT);
const { RedisStore, SCRIPT_REPLY } = await import(`${input.libUrl}stores/redis/redis.store.js`);
const ioredis = await import(input.ioredisUrl);
const Redis = ioredis.Redis ?? ioredis.default.Redis;

const sleepUntil = (at) => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));

const store = new RedisStore({ url: input.url, keyPrefix: input.prefix, commandTimeout: 5_000, onFailure: 'fail-open' });
await store.init();
let stamps = [];
store[SCRIPT_REPLY] = (reply) => {
  if (reply.allowed) stamps.push(reply.nowMs);
};

const phases = [];
for (const phase of input.phases) {
  const limits = [
    { name: 'm', algorithm: phase.algorithm, limit: phase.limit, windowMs: phase.windowMs, burst: phase.burst },
    // A counter nobody reaches: Redis's record of every admission of the call.
    { name: 'audit', algorithm: 'fixed-window', limit: 1e12, windowMs: 2 ** 40, burst: 1e12 },
  ];
  stamps = [];
  let acknowledged = 0;
  let degraded = 0;
  let errors = 0;
  let decisions = 0;
  await sleepUntil(phase.startAt);
  const end = phase.startAt + phase.durationMs;
  const loop = async () => {
    while (Date.now() < end) {
      try {
        const decision = await store.consume(phase.key, limits, 1, 'consume', Date.now());
        decisions++;
        if (decision.degraded !== undefined) degraded++;
        else if (decision.allowed) acknowledged++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: input.inflight }, loop));
  phases.push({ algorithm: phase.algorithm, stamps, acknowledged, degraded, errors, decisions });
}

// The broken control: read, then write, in two round trips.
const client = new Redis(input.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
await client.connect();
let controlAdmitted = 0;
let controlAttempts = 0;
await sleepUntil(input.control.startAt);
const controlEnd = input.control.startAt + input.control.durationMs;
const controlLoop = async () => {
  while (Date.now() < controlEnd) {
    controlAttempts++;
    const count = Number((await client.get(input.control.key)) ?? 0);
    if (count + 1 <= input.control.limit) {
      await client.set(input.control.key, String(count + 1), 'PX', 60_000);
      controlAdmitted++;
    }
  }
};
await Promise.all(Array.from({ length: input.inflight }, controlLoop));
await client.quit();
const stats = store.stats();
await store.close();
console.log(JSON.stringify({ phases, control: { admitted: controlAdmitted, attempts: controlAttempts }, stats }));
