// One memory scenario in a process of its own (see run.mjs); prints one JSON line.
//   flood <algorithm> <maxKeys>: 1,000,000 distinct client keys, one decision each
//   steady <algorithm>: 10,000 clients calling once a simulated second for 10 simulated minutes
// Time is a FakeClock's: the store never reads real time, so the runs are the same on any machine.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const ours = await import(process.env.BENCH_DIST ? pathToFileURL(resolve(process.env.BENCH_DIST, 'index.js')).href : '../../dist/index.js');

if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc');
const [kind, algorithm, maxKeysArg] = process.argv.slice(2);

/** Memory after two full collections: what the process holds, not garbage awaiting collection. */
function settled() {
  globalThis.gc();
  globalThis.gc();
  const { rss, heapUsed, arrayBuffers } = process.memoryUsage();
  return { rss, heapUsed, arrayBuffers, retained: heapUsed + arrayBuffers };
}

/** Timers and other handles keeping the event loop, by kind. */
function resources() {
  const counts = {};
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

/** A client address per index: 16 million distinct IPv4 addresses. */
function address(i) {
  return `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;
}

if (kind === 'flood') {
  const FLOOD = 1_000_000;
  const maxKeys = maxKeysArg === 'default' ? undefined : Number(maxKeysArg);
  const clock = new ours.FakeClock();
  const store = new ours.MemoryStore(maxKeys === undefined ? {} : { maxKeys });
  // 100 calls a minute per client: one call leaves each key live for a minute, far longer than
  // the flood lasts, so every eviction loses state (and is counted).
  const policy = new ours.RateLimitPolicy({ algorithm, limit: 100, window: '1m' }, { store, clock });
  const listenersBefore = process.listenerCount('exit') + process.listenerCount('beforeExit');
  const resourcesBefore = resources();
  const before = settled();
  let peakRss = before.rss;
  let peakKeys = 0;
  let refused = 0;
  const started = process.cpuUsage();
  for (let i = 0; i < FLOOD; i++) {
    // Each request builds its key, as a guard does.
    if (!policy.decide(address(i)).allowed) refused++;
    // 100k requests a second.
    if (i % 100 === 99) clock.advance(1);
    if (i % 10_000 === 9_999) {
      peakKeys = Math.max(peakKeys, store.stats().keys);
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }
  }
  const spent = process.cpuUsage(started);
  const after = settled();
  const stats = store.stats();
  store.clear();
  const cleared = settled();
  console.log(
    JSON.stringify({
      kind,
      algorithm,
      maxKeys: store.maxKeys,
      flood: FLOOD,
      refused,
      keys: stats.keys,
      peakKeys: Math.max(peakKeys, stats.keys),
      evictions: stats.evictions,
      before,
      after,
      cleared,
      peakRss,
      maxRss: process.resourceUsage().maxRSS * 1024,
      bytesPerKey: (after.retained - cleared.retained) / stats.keys,
      cpuNsPerDecision: ((spent.user + spent.system) * 1000) / FLOOD,
      resourcesBefore,
      resourcesAfter: resources(),
      listenersBefore,
      listenersAfter: process.listenerCount('exit') + process.listenerCount('beforeExit'),
      pendingTimers: clock.pendingTimers,
    }),
  );
} else if (kind === 'steady') {
  const CLIENTS = 10_000;
  const MINUTES = 10;
  const clock = new ours.FakeClock();
  const store = new ours.MemoryStore({ maxKeys: 2 * CLIENTS });
  // Once a second is 60 a minute: above 50, so part of the traffic is refused all along.
  const policy = new ours.RateLimitPolicy({ algorithm, limit: 50, window: '1m' }, { store, clock });
  const keys = Array.from({ length: CLIENTS }, (_, i) => address(i));
  // Clients come in a different order each second (a fixed pseudo-random sequence).
  const order = Uint32Array.from(keys, (_, i) => i);
  let x = 2_463_534_242;
  const random = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const resourcesBefore = resources();
  const start = settled();
  const samples = [];
  for (let minute = 1; minute <= MINUTES; minute++) {
    for (let second = 0; second < 60; second++) {
      for (let i = order.length - 1; i > 0; i--) {
        const j = random() % (i + 1);
        const swap = order[i];
        order[i] = order[j];
        order[j] = swap;
      }
      for (let i = 0; i < order.length; i++) policy.decide(keys[order[i]]);
      clock.advance(1_000);
    }
    const memory = settled();
    samples.push({ minute, ...store.stats(), ...policy.stats(), ...memory });
  }
  console.log(JSON.stringify({ kind, algorithm, clients: CLIENTS, start, samples, resourcesBefore, resourcesAfter: resources(), pendingTimers: clock.pendingTimers }));
} else {
  throw new Error(`unknown scenario ${kind}`);
}
