// The HTTP benchmark: each app (apps.mjs) in a child process of its own, loaded by autocannon
// from this process over loopback; several rounds, each a warm-up then a measured run; ratios to
// the bare app of the same round and adapter. Writes bench/RESULTS.md's HTTP section.
//
// Environment (all optional):
//   BENCH_ROUNDS=3  BENCH_WARMUP=2  BENCH_DURATION=5  (seconds)  BENCH_CONNECTIONS=50
//   BENCH_ROWS=bare,rl:hot         only these rows (bare is always added: ratios need it)
//   BENCH_ADAPTERS=fastify         only these adapters (express,fastify)
//   BENCH_PROFILE=./profiles      run the apps under --cpu-prof, one .cpuprofile per app run
//   BENCH_WRITE=0                  do not write bench/RESULTS.md
//   BENCH_JSON=./http.json         where the raw figures go (default: the OS temp folder)
import { fork, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { apps, KEY_HEADER } from './apps.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..', '..');
const env = process.env;
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const WARMUP = Number(env.BENCH_WARMUP ?? 2);
const DURATION = Number(env.BENCH_DURATION ?? 5);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 50);
const ADAPTERS = (env.BENCH_ADAPTERS ?? 'fastify,express').split(',');
const PROFILE = env.BENCH_PROFILE;
const JSON_OUT = env.BENCH_JSON ?? join(os.tmpdir(), 'nest-resilience-bench-http.json');

// Row 7 only when the Redis store is there (it is being written alongside).
const redisAvailable = existsSync(join(root, 'lib/stores/redis/redis.store.ts')) && existsSync(join(root, 'dist/redis.js'));
const wanted = env.BENCH_ROWS ? new Set(['bare', ...env.BENCH_ROWS.split(',')]) : undefined;
const rows = Object.keys(apps).filter((row) => (wanted === undefined ? !apps[row].diagnostic : wanted.has(row)) && (!apps[row].redis || redisAvailable));
const skipped = Object.keys(apps).filter((row) => apps[row].redis && !redisAvailable);

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Our own redis-server on a free loopback port, nothing persisted. */
async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const { Redis } = await import(createRequire(join(root, 'package.json')).resolve('ioredis'));
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
  for (let attempt = 0; ; attempt++) {
    try {
      await client.connect();
      break;
    } catch (error) {
      if (attempt > 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return { url: `redis://127.0.0.1:${port}`, client, stop: () => { client.disconnect(); child.kill(); } };
}

/** Ticks of CPU time (user + system) a process has used, from /proc. */
function cpuTicks(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return NaN;
  }
}
const TICKS_PER_SECOND = 100;

/** Loads `url` for `seconds`; with `keys`, every request carries the next of `keys` client keys. */
async function load(url, seconds, keys) {
  const options = { url, connections: CONNECTIONS, duration: seconds, timeout: 10 };
  // (A static list of 10k prebuilt requests loaded the app less: autocannon's iteration over it
  // cost more than setupRequest.)
  if (keys) {
    const names = Array.from({ length: keys }, (_, index) => `c${index}`);
    let next = 0;
    options.requests = [{ setupRequest: (request) => ({ ...request, headers: { [KEY_HEADER]: names[next++ % keys] } }) }];
  }
  const latencies = [];
  const perSecond = [];
  const statuses = {};
  let count = 0;
  const instance = autocannon(options);
  instance.on('response', (_client, status, _bytes, ms) => {
    count++;
    statuses[status] = (statuses[status] ?? 0) + 1;
    latencies.push(ms);
  });
  const ticker = setInterval(() => {
    perSecond.push(count);
    count = 0;
  }, 1000);
  const result = await instance;
  clearInterval(ticker);
  if (count > 0 && perSecond.length < seconds) perSecond.push(count);
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return {
    rps: latencies.length / result.duration,
    p50: at(0.5),
    p99: at(0.99),
    errors: result.errors + result.timeouts,
    statuses,
    perSecond,
    seconds: result.duration,
  };
}

async function runApp(row, adapter, round, redis) {
  const profileName = `${row.replace(/[^A-Za-z0-9]+/g, '_')}.${adapter}.r${round}.cpuprofile`;
  const execArgv = PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`, `--cpu-prof-name=${profileName}`] : [];
  if (redis && apps[row].redis) await redis.client.flushall();
  const child = fork(join(here, 'app.mjs'), [row, adapter], { execArgv, env: { ...env, ...(redis ? { BENCH_REDIS_URL: redis.url } : {}) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const ready = await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`app ${row} on ${adapter} exited (${code}) before listening`)));
    });
    const base = `http://127.0.0.1:${ready.port}`;
    // Every other route once, so that whatever they set up (context propagation...) is live.
    for (const path of ready.prepare) {
      const response = await fetch(base + path);
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error(`${row} on ${adapter}: ${path} answered ${response.status}`);
    }
    const url = base + (apps[row].path ?? '/hello');
    const expected = apps[row].status ?? 200;
    const warm = await load(url, WARMUP, apps[row].load?.keys);
    const appBefore = cpuTicks(child.pid);
    const loadBefore = process.cpuUsage();
    const started = performance.now();
    const measured = await load(url, DURATION, apps[row].load?.keys);
    const elapsed = (performance.now() - started) / 1000;
    measured.appCpu = (cpuTicks(child.pid) - appBefore) / TICKS_PER_SECOND / elapsed;
    const loadUsage = process.cpuUsage(loadBefore);
    measured.loadCpu = (loadUsage.user + loadUsage.system) / 1e6 / elapsed;
    measured.cpuPerRequest = (measured.appCpu * elapsed * 1e6) / (measured.rps * measured.seconds);
    // profile.mjs turns the profile's time into µs per request with this.
    if (PROFILE) writeFileSync(join(PROFILE, `${profileName}.requests.json`), JSON.stringify({ requests: Math.round(warm.rps * warm.seconds + measured.rps * measured.seconds) }));
    measured.unexpected = Object.entries(measured.statuses).filter(([status]) => Number(status) !== expected).reduce((sum, [, n]) => sum + n, 0);
    return measured;
  } finally {
    if (child.connected) child.send('stop');
    await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
  }
}

function median(values) {
  const sorted = values.filter(Number.isFinite).toSorted((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// --- run -------------------------------------------------------------------------------------

let results = {}; // results[adapter][row][round - 1] = one measured run
let meta = { rounds: ROUNDS, warmup: WARMUP, duration: DURATION, connections: CONNECTIONS };
let measuredRows = rows;
if (env.BENCH_FROM) {
  // Report again from the raw figures of earlier runs (comma-separated files, their rounds put
  // side by side; the runs must share warm-up, duration and connections).
  const runs = env.BENCH_FROM.split(',').map((file) => JSON.parse(readFileSync(file, 'utf8')));
  const [first] = runs;
  if (runs.some((run) => run.warmup !== first.warmup || run.duration !== first.duration || run.connections !== first.connections)) throw new Error('BENCH_FROM: runs of different settings');
  meta = { rounds: 0, runs: runs.length, warmup: first.warmup, duration: first.duration, connections: first.connections, date: [...new Set(runs.map((run) => run.date ?? '?'))].join(', ') };
  for (const run of runs) {
    for (const adapter of Object.keys(run.results)) {
      const rowsHere = new Set([...Object.keys(results[adapter] ?? {}), ...Object.keys(run.results[adapter])]);
      for (const row of rowsHere) {
        const list = ((results[adapter] ??= {})[row] ??= []);
        list.length = meta.rounds;
        for (let round = 0; round < run.rounds; round++) list.push(run.results[adapter][row]?.[round]);
      }
    }
    meta.rounds += run.rounds;
  }
  measuredRows = Object.keys(apps).filter((row) => Object.values(results).some((byRow) => byRow[row]?.some(Boolean)));
} else {
  if (PROFILE) mkdirSync(PROFILE, { recursive: true });
  const redis = rows.some((row) => apps[row].redis) ? await startRedis() : undefined;
  const started = Date.now();
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      // Every other round runs the rows backwards, so a slow drift of the machine does not
      // favour the rows that come first.
      const order = round % 2 ? rows : rows.toReversed();
      for (const adapter of ADAPTERS) {
        for (const row of order) {
          const measured = await runApp(row, adapter, round, redis);
          ((results[adapter] ??= {})[row] ??= [])[round - 1] = measured;
          const bare = results[adapter].bare?.[round - 1]?.rps;
          const flag = measured.errors || measured.unexpected ? `  !! ${measured.errors} errors, ${measured.unexpected} unexpected statuses ${JSON.stringify(measured.statuses)}` : '';
          console.log(
            `round ${round} ${adapter.padEnd(7)} ${row.padEnd(24)} ${measured.rps.toFixed(0).padStart(7)} req/s  p50 ${measured.p50.toFixed(2)} ms  p99 ${measured.p99.toFixed(2)} ms` +
              `${bare ? `  ×bare ${(measured.rps / bare).toFixed(3)}` : ''}  cpu/req ${measured.cpuPerRequest.toFixed(1)} µs  cpu app ${(measured.appCpu * 100).toFixed(0)}% load ${(measured.loadCpu * 100).toFixed(0)}%${flag}`,
          );
        }
      }
    }
  } finally {
    redis?.stop();
  }
  meta.date = new Date().toISOString().slice(0, 10);
  writeFileSync(JSON_OUT, JSON.stringify({ ...meta, results }, null, 1));
  console.log(`raw figures: ${JSON_OUT}; ${((Date.now() - started) / 60000).toFixed(1)} min`);
}

// --- report ----------------------------------------------------------------------------------
// Other work on the machine only ever slows a run down, so a row's figure is its best round
// (highest rate, lowest CPU per request); the per-round ratios (each round's row ÷ the same
// round's reference) are given beside it, as median (min–max).

const roundsOf = (adapter, row) => (results[adapter]?.[row] ?? []).filter(Boolean);
const best = (adapter, row) => roundsOf(adapter, row).reduce((a, b) => (b.rps > a.rps ? b : a));
const leastCpu = (adapter, row) => Math.min(...roundsOf(adapter, row).map((m) => m.cpuPerRequest));

/** `row` ÷ `reference` (same adapter): by rate (or by CPU per request), best of rounds and per round. */
function ratio(adapter, row, reference = 'bare', byCpu = false) {
  const a = results[adapter]?.[row];
  const b = results[adapter]?.[reference];
  if (!a || !b) return undefined;
  const values = [];
  a.forEach((measured, index) => {
    const ref = b[index];
    if (measured && ref) values.push(byCpu ? ref.cpuPerRequest / measured.cpuPerRequest : measured.rps / ref.rps);
  });
  const headline = byCpu ? leastCpu(adapter, reference) / leastCpu(adapter, row) : best(adapter, row).rps / best(adapter, reference).rps;
  return { headline, median: median(values), min: Math.min(...values), max: Math.max(...values), rounds: values.length };
}
const fmtRatio = (r) => (r === undefined ? '—' : r.rounds < 2 ? r.headline.toFixed(2) : `**${r.headline.toFixed(2)}** · ${r.median.toFixed(2)} (${r.min.toFixed(2)}–${r.max.toFixed(2)})`);
const f = (n) => Math.round(n).toLocaleString('en-US');

const labels = {
  bare: '(1) bare Nest endpoint',
  guard: '(2) one no-op guard',
  interceptor: '(2) one pass-through interceptor',
  'guard+interceptor': '(2) guard + interceptor on one handler',
  'bare+als': '(3′) bare, one AsyncLocalStorage entered once (its process-wide price alone)',
  'module:plain': '(3) undecorated route, module imported, every decorator (timeouts too) on other routes',
  'module:plain-no-timeout': '(3′) the same app without any @Timeout (no AsyncLocalStorage entered)',
  'bare:10k-load': '(4′) bare, loaded with the rotating key header (load-generator control)',
  'rl:hot': '(4) @RateLimit, memory, one client key',
  'rl:10k': '(4) @RateLimit, memory, 10k rotating keys',
  'throttler:hot': '(4) @nestjs/throttler guard, memory, one client key',
  'throttler:10k': '(4) @nestjs/throttler guard, memory, 10k rotating keys',
  full: '(5) full stack: @RateLimit + @CircuitBreaker + @Retry + @Timeout + @Bulkhead + @Fallback',
  'full:no-rl': '(5′) ours, the interceptor patterns only (no @RateLimit): like for like with (6)',
  opossum: '(6) opossum breaker (timeout, capacity, fallback) + a retry loop, hand-written interceptor',
  cockatiel: '(6) cockatiel wrap(fallback, retry, breaker, timeout, bulkhead), hand-written interceptor',
  'rl:redis': '(7) @RateLimit on RedisStore, one client key',
  'throttler:redis': '(7) @nestjs/throttler + @nest-lab/throttler-storage-redis, one client key',
  'rl:429': '(8) @RateLimit, one client over its limit: every answer a 429',
  'throttler:429': '(8) @nestjs/throttler, one client over its limit: every answer a 429',
  'rl:hot:no-headers': '(diagnostic) @RateLimit one key, http.headers: none',
  'rl:hot:key-global': "(diagnostic) @RateLimit one key, key: 'global' (no client address read)",
  'full:no-timeout': '(diagnostic) full stack without @Timeout (no AsyncLocalStorage)',
  'guard:429': '(diagnostic) a guard throwing one prebuilt 429 HttpException: what Nest charges for a refusal',
};

function versionOf(name) {
  for (const base of [join(here, '..'), root]) {
    try {
      return JSON.parse(readFileSync(join(base, 'node_modules', name, 'package.json'), 'utf8')).version;
    } catch {
      // not installed there
    }
  }
  try {
    return JSON.parse(readFileSync(createRequire(join(root, 'node_modules/@nestjs/platform-fastify/package.json')).resolve(`${name}/package.json`), 'utf8')).version;
  } catch {
    return '?';
  }
}
let redisVersion = '';
try {
  redisVersion = execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).match(/v=(\S+)/)?.[1] ?? '';
} catch {
  redisVersion = 'not installed';
}

const lines = [];
const out = (line = '') => lines.push(line);
const cpu = os.cpus();
out('## HTTP (`npm run bench:http`)');
out();
out(
  `Measured ${meta.date ?? new Date().toISOString().slice(0, 10)} on ${cpu.length} × ${cpu[0]?.model.trim()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}; ` +
    `@nestjs/core ${versionOf('@nestjs/core')}, platform-express ${versionOf('@nestjs/platform-express')} (express ${versionOf('express')}), platform-fastify ${versionOf('@nestjs/platform-fastify')} (fastify ${versionOf('fastify')}), ` +
    `@nestjs/throttler ${versionOf('@nestjs/throttler')}, @nest-lab/throttler-storage-redis ${versionOf('@nest-lab/throttler-storage-redis')} (its peer range stops at Nest 11; installed without peer checks, it works on 12), ` +
    `opossum ${versionOf('opossum')}, cockatiel ${versionOf('cockatiel')}, autocannon ${versionOf('autocannon')}, ioredis ${versionOf('ioredis')}, Redis ${redisVersion} (our own server on a free loopback port).`,
);
out();
out(
  `Each app in a process of its own on 127.0.0.1, loaded by autocannon from this process: ${meta.connections} connections, ${meta.warmup} s warm-up then ${meta.duration} s measured, ${meta.rounds} rounds ` +
    `${meta.runs > 1 ? `(from ${meta.runs} runs)` : '(rows in order, then in reverse order, alternately)'}; ` +
    'GET returning a small JSON object. Other work on the machine only slows a run down, so each row shows its **best round**: ' +
    'req/s, and p50 / p99 of that round. "× bare" is the best round ÷ the bare app\'s best round (bold), then the per-round ratios (each round ÷ the bare app of the same round): median (min–max). ' +
    '"µs over bare" = 1/rate − 1/bare rate (best rounds): the extra time per request on the app\'s one core. "app CPU µs/req" is the CPU time (user + system, from /proc) the app spent per answered request, ' +
    'least of the rounds; "× bare by CPU" the same ratios computed from it (bare CPU per request ÷ the row\'s), steadier than rates when the machine is shared. "CPU app / load": cores used by the app and by the load generator in the best round.',
);
const spread = ADAPTERS.filter((adapter) => results[adapter]?.bare).map((adapter) => {
  const rates = roundsOf(adapter, 'bare').map((m) => m.rps);
  return `${adapter} ${f(Math.min(...rates))}–${f(Math.max(...rates))} req/s`;
});
out();
out(`The bare app across the rounds: ${spread.join(', ')} (how much other work shared the machine).`);
if (skipped.length) out(`\nNot run: ${skipped.join(', ')} (the Redis store is not in lib/ and dist/ yet).`);
for (const adapter of ADAPTERS) {
  if (!results[adapter]) continue;
  out();
  out(`### ${adapter === 'fastify' ? 'Fastify' : 'Express'}`);
  out();
  out('| row | req/s | p50 ms | p99 ms | × bare | µs over bare | app CPU µs/req | × bare by CPU | CPU app / load |');
  out('|---|---|---|---|---|---|---|---|---|');
  const bareRps = best(adapter, 'bare').rps;
  for (const row of measuredRows) {
    if (!roundsOf(adapter, row).length) continue;
    const top = best(adapter, row);
    const extra = row === 'bare' ? '' : ((1 / top.rps - 1 / bareRps) * 1e6).toFixed(1);
    const bad = roundsOf(adapter, row).some((m) => m.errors || m.unexpected) ? ' ⚠ errors or unexpected statuses' : '';
    out(`| ${labels[row] ?? row}${bad} | ${f(top.rps)} | ${top.p50.toFixed(2)} | ${top.p99.toFixed(2)} | ${fmtRatio(ratio(adapter, row))} | ${extra} | ${leastCpu(adapter, row).toFixed(1)} | ${fmtRatio(ratio(adapter, row, 'bare', true))} | ${top.appCpu.toFixed(2)} / ${top.loadCpu.toFixed(2)} |`);
  }
}

// Targets (issue "Performance", section 2), with the measured ratios beside them.
out();
out('### Targets');
out();
out('Verdicts on the best-round ratio by rate (bold); the CPU-based ratio beside it.');
out();
out('| target | Fastify: × · by CPU | Express: × · by CPU | met? |');
out('|---|---|---|---|');
const has = (...names) => names.every((name) => measuredRows.includes(name));
function targetRow(label, row, reference, test, fastifyOnly = false) {
  if (!has(row, reference)) return;
  const cells = { fastify: '—', express: '—' };
  const checks = [];
  for (const adapter of ADAPTERS) {
    const r = ratio(adapter, row, reference);
    if (r === undefined) continue;
    cells[adapter] = `${r.headline.toFixed(2)} · ${ratio(adapter, row, reference, true).headline.toFixed(2)}`;
    if (test && (!fastifyOnly || adapter === 'fastify')) checks.push(test(r.headline));
  }
  const verdict = checks.length === 0 ? 'anchor, no target' : checks.every(Boolean) ? 'met' : 'not met';
  out(`| ${label} | ${cells.fastify} | ${cells.express} | ${verdict} |`);
}
targetRow('(3) undecorated route, module imported: ≥ 0.98 × bare', 'module:plain', 'bare', (v) => v >= 0.98);
targetRow('(3′) the same without @Timeout anywhere: ≥ 0.98 × bare', 'module:plain-no-timeout', 'bare', (v) => v >= 0.98);
targetRow('(4) @RateLimit, one key: ≥ 0.90 × bare on Fastify (PERF.md: throttler 0.05)', 'rl:hot', 'bare', (v) => v >= 0.9, true);
targetRow('(4) @RateLimit, 10k keys: ≥ 0.90 × bare on Fastify (PERF.md: throttler 0.57–0.65)', 'rl:10k', 'bare', (v) => v >= 0.9, true);
targetRow('(4) the same ÷ the bare app under the same rotating-key load (the load generator is near its limit there)', 'rl:10k', 'bare:10k-load', (v) => v >= 0.9, true);
targetRow('(5) full stack: ≥ 0.95 × the guard + interceptor floor', 'full', 'guard+interceptor', (v) => v >= 0.95);
targetRow('(5) full stack ahead of opossum (> 1)', 'full', 'opossum', (v) => v > 1);
targetRow('(5) full stack ahead of cockatiel (> 1)', 'full', 'cockatiel', (v) => v > 1);
targetRow('(5′) ours without @RateLimit ahead of opossum (> 1), like for like', 'full:no-rl', 'opossum', (v) => v > 1);
targetRow('(5′) ours without @RateLimit ahead of cockatiel (> 1), like for like', 'full:no-rl', 'cockatiel', (v) => v > 1);
targetRow('(7) @RateLimit on Redis: ≥ 1.5 × throttler + its Redis storage', 'rl:redis', 'throttler:redis', (v) => v >= 1.5);
targetRow('(8) a 429 cheaper than an allowed request: 429s ÷ allowed (rl:hot) > 1', 'rl:429', 'rl:hot', (v) => v > 1);
targetRow('(8) our 429s ÷ throttler\'s 429s', 'rl:429', 'throttler:429');

// Steadiness of the rate-limit rows: per-second rates over the measured run.
const steadyRows = measuredRows.filter((row) => /^(rl|throttler):(hot|10k)$/.test(row));
if (steadyRows.length) {
  out();
  out(`### Rate limiters over time (best round; each app had run ${meta.warmup} s of warm-up before its ${meta.duration} measured seconds)`);
  out();
  out('| row | adapter | first s | last s | min s | max s | last ÷ first |');
  out('|---|---|---|---|---|---|---|');
  for (const adapter of ADAPTERS) {
    for (const row of steadyRows) {
      if (!roundsOf(adapter, row).length) continue;
      const series = best(adapter, row).perSecond.slice(0, meta.duration);
      if (!series.length) continue;
      out(`| ${labels[row]} | ${adapter} | ${f(series[0])} | ${f(series.at(-1))} | ${f(Math.min(...series))} | ${f(Math.max(...series))} | ${(series.at(-1) / series[0]).toFixed(2)} |`);
    }
  }
}
const section = lines.join('\n');
console.log(`\n${section}\n`);

if (env.BENCH_WRITE !== '0') {
  const file = join(here, '..', 'RESULTS.md');
  const start = '<!-- http:start -->';
  const end = '<!-- http:end -->';
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n';
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  // Hand-written notes (the profiles' findings) between these markers survive a new run.
  const notesStart = '<!-- http:notes:start -->';
  const notesEnd = '<!-- http:notes:end -->';
  const old = from >= 0 && to > from ? text.slice(from, to) : '';
  const notes = old.includes(notesStart) && old.includes(notesEnd) ? old.slice(old.indexOf(notesStart), old.indexOf(notesEnd) + notesEnd.length) : '';
  const block = `${start}\n${section}\n${notes ? `\n${notes}\n` : ''}${end}`;
  text = from >= 0 && to > from ? text.slice(0, from) + block + text.slice(to + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, text);
  console.log(`wrote ${file}`);
}
