// Runs the memory scenarios, each in a child process of its own (so that RSS and its peak are
// the scenario's), and writes bench/RESULTS.md's memory section.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// BENCH_DIST: the build to measure (default: dist). BENCH_BASELINE_DIST: another build (e.g. an
// earlier commit's dist) whose floods run too, for its bytes per key; BENCH_BASELINE_LABEL says what it is.
const here = fileURLToPath(new URL('.', import.meta.url));
const env = { ...process.env, BENCH_DIST: process.env.BENCH_DIST ? resolve(process.env.BENCH_DIST) : '' };
const baselineDist = process.env.BENCH_BASELINE_DIST ? resolve(process.env.BENCH_BASELINE_DIST) : undefined;
const baselineLabel = process.env.BENCH_BASELINE_LABEL ?? baselineDist;
const algorithms = ['token-bucket', 'sliding-window-log', 'sliding-window-counter', 'fixed-window', 'gcra'];

function run(dist, ...args) {
  const out = execFileSync(process.execPath, ['--expose-gc', 'scenario.mjs', ...args], {
    cwd: here,
    encoding: 'utf8',
    env: dist === undefined ? env : { ...env, BENCH_DIST: dist },
    maxBuffer: 16 * 2 ** 20,
  });
  return JSON.parse(out.trim().split('\n').pop());
}

const mb = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
const count = (value) => value.toLocaleString('en');
const describe = (resources) =>
  Object.entries(resources)
    .map(([name, n]) => `${name} ${n}`)
    .join(', ') || 'none';

const floods = [];
for (const maxKeys of ['default', '100000']) {
  for (const algorithm of algorithms) {
    const row = run(undefined, 'flood', algorithm, maxKeys);
    if (baselineDist !== undefined) row.baseline = run(baselineDist, 'flood', algorithm, maxKeys);
    floods.push(row);
    console.log(
      `flood ${algorithm.padEnd(22)} maxKeys ${String(row.maxKeys).padStart(6)}: keys ≤ ${row.peakKeys}, evictions ${row.evictions}, ` +
        `${row.bytesPerKey.toFixed(0)} B/key, RSS ${mb(row.before.rss)} → peak ${mb(row.maxRss)} → ${mb(row.after.rss)}`,
    );
  }
}
const steady = [];
for (const algorithm of algorithms) {
  const row = run(undefined, 'steady', algorithm);
  steady.push(row);
  const first = row.samples[0];
  const last = row.samples.at(-1);
  console.log(`steady ${algorithm.padEnd(22)} keys ${first.keys} → ${last.keys}, retained ${mb(first.retained)} → ${mb(last.retained)}`);
}

const lines = [];
lines.push('<!-- memory:start -->');
lines.push('## Memory store (`npm run bench:memory`)');
lines.push('');
lines.push(
  `Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}. ` +
    'Each scenario in a process of its own, on the library\'s `FakeClock` (no real time: the figures are the same on any machine, but for RSS). ' +
    '"Retained": the JavaScript heap plus array buffers after two full collections (`--expose-gc`); the store\'s records are typed arrays, outside the heap. ' +
    '"B/key": retained with the store full, less retained once `store.clear()` ran, per key held (the key string, its `Map` entry, its record and links, its sliding log if any).',
);
lines.push('');
lines.push('### A flood of 1,000,000 distinct client keys');
lines.push('');
lines.push(
  '`RateLimitPolicy.decide(ip)` on a `MemoryStore`, one decision per address (`10.a.b.c`, built per request), 100k decisions per simulated second, limit 100 per minute. ' +
    'With the window algorithms a key called once keeps state for the minute, so every key evicted is live (and counted); a token bucket or GCRA refills that call in 0.6 s, so past half the bound ' +
    'the store drops keys already full again instead of evicting live ones, and holds fewer. Target: bounded by `maxKeys`.',
);
lines.push('');
const withBaseline = baselineDist !== undefined;
lines.push(
  `| algorithm | maxKeys | keys held (peak) | live keys evicted | B/key |${withBaseline ? ' B/key, baseline build |' : ''} retained before → after | RSS before → peak → after | timers & handles before → after | clock timers | CPU ns per decision (key built, evictions) |`,
);
lines.push(`|---|---|---|---|---|${withBaseline ? '---|' : ''}---|---|---|---|---|`);
for (const row of floods) {
  lines.push(
    `| ${row.algorithm} | ${count(row.maxKeys)} | ${count(row.keys)} (${count(row.peakKeys)}) | ${count(row.evictions)} | ${row.bytesPerKey.toFixed(0)} |${withBaseline ? ` ${row.baseline.bytesPerKey.toFixed(0)} |` : ''} ` +
      `${mb(row.before.retained)} → ${mb(row.after.retained)} | ${mb(row.before.rss)} → ${mb(row.maxRss)} → ${mb(row.after.rss)} | ` +
      `${describe(row.resourcesBefore)} → ${describe(row.resourcesAfter)} | ${row.pendingTimers} | ${row.cpuNsPerDecision.toFixed(0)} |`,
  );
}
const within = floods.every((row) => row.peakKeys <= row.maxKeys);
const sameResources = floods.every((row) => describe(row.resourcesBefore) === describe(row.resourcesAfter) && row.pendingTimers === 0 && row.listenersAfter === row.listenersBefore);
lines.push('');
lines.push(
  `Bound: ${within ? 'met — no scenario held more than `maxKeys`' : 'NOT met'}; timers, handles and process listeners: ${sameResources ? 'none added' : 'CHANGED'}. ` +
    'Peak RSS is the process\'s (`resourceUsage().maxRSS`), Node itself included.' +
    (withBaseline ? ` Baseline build: ${baselineLabel}, same floods.` : ''),
);
lines.push('');
lines.push('### Ten simulated minutes of steady traffic');
lines.push('');
lines.push(
  `${count(steady[0].clients)} clients, each calling once a simulated second in a shuffled order, limit 50 per minute (so part of the traffic is refused all along), ` +
    'one `MemoryStore` (maxKeys 20,000) per algorithm; sampled at the end of each simulated minute. Target: no growth.',
);
lines.push('');
lines.push('| algorithm | keys held, minutes 1 → 10 | evictions | admitted / refused (10 min) | retained, minute 1 → 10 (min–max) | RSS, minute 1 → 10 | timers & handles before → after |');
lines.push('|---|---|---|---|---|---|---|');
for (const row of steady) {
  const first = row.samples[0];
  const last = row.samples.at(-1);
  const retained = row.samples.map((sample) => sample.retained);
  lines.push(
    `| ${row.algorithm} | ${row.samples.map((sample) => count(sample.keys)).join(', ')} | ${count(last.evictions)} | ${count(last.admitted)} / ${count(last.rejected)} | ` +
      `${mb(first.retained)} → ${mb(last.retained)} (${mb(Math.min(...retained))}–${mb(Math.max(...retained))}) | ${mb(first.rss)} → ${mb(last.rss)} | ` +
      `${describe(row.resourcesBefore)} → ${describe(row.resourcesAfter)} |`,
  );
}
const flat = steady.every((row) => {
  const keys = row.samples.map((sample) => sample.keys);
  const retained = row.samples.map((sample) => sample.retained);
  return Math.max(...keys) === Math.min(...keys) && Math.max(...retained) - Math.min(...retained) < 2 ** 20 && row.pendingTimers === 0;
});
lines.push('');
lines.push(`No growth: ${flat ? 'met — the same keys every minute, retained memory within 1 MB from minute 1 to 10, no timer' : 'NOT met'}.`);
lines.push('<!-- memory:end -->');
const section = lines.join('\n');

// Only this section is rewritten: the file's other sections belong to the other benchmarks.
const file = new URL('../RESULTS.md', import.meta.url);
let doc = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n';
if (/<!-- memory:start -->[\s\S]*<!-- memory:end -->/.test(doc)) doc = doc.replace(/<!-- memory:start -->[\s\S]*<!-- memory:end -->/, () => section);
else if (doc.includes('<!-- http:start -->')) doc = doc.replace('<!-- http:start -->', () => `${section}\n\n<!-- http:start -->`);
else doc = `${doc.trimEnd()}\n\n${section}\n`;
writeFileSync(file, doc);
console.log(`\nwrote ${fileURLToPath(file)}`);
