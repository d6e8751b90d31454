// Redis rate-limit decisions: ours (dist/, every algorithm) against the raw ceiling (ioredis EVALSHA
// of `return 1`) and rate-limiter-flexible's RateLimiterRedis.consume, in one process, on a
// redis-server this script starts on a free loopback port (and stops by its PID). Writes the
// "Redis" section of bench/RESULTS.md between <!-- redis:start --> and <!-- redis:end -->.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';

// BENCH_DIST: another build of the package (default: the repository's dist/); BENCH_WRITE=0: print only.
const { RedisStore } = await import(process.env.BENCH_DIST ?? '../../dist/redis.js');
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 700);
const WARMUP_MS = 200;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const ALGORITHMS = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-counter', 'sliding-window-log'];
const DISTINCT_KEYS = 100_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10_000);
    child.stdout.on('data', (chunk) => {
      output += chunk;
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}:\n${output}`)));
  });
  child.stdout.resume();
  child.stderr.resume();
  const version = /v=(\S+)/.exec(String(await new Promise((resolve) => {
    const probe = spawn('redis-server', ['--version']);
    let text = '';
    probe.stdout.on('data', (chunk) => (text += chunk));
    probe.on('exit', () => resolve(text));
  })))?.[1];
  return {
    url: `redis://127.0.0.1:${port}`,
    version,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', resolve);
        process.kill(child.pid, 'SIGKILL');
      }),
  };
}

const latencies = new Float64Array(4_000_000);

/** Redis's counters: CPU seconds used (user + system), and script calls and the µs spent in them. */
async function redisCounters(admin) {
  const cpu = String(await admin.info('cpu'));
  const counters = { cpu: Number(/used_cpu_user:([\d.]+)/.exec(cpu)[1]) + Number(/used_cpu_sys:([\d.]+)/.exec(cpu)[1]), calls: 0, usec: 0 };
  for (const match of String(await admin.info('commandstats')).matchAll(/cmdstat_eval(?:sha)?:calls=(\d+),usec=(\d+)/g)) {
    counters.calls += Number(match[1]);
    counters.usec += Number(match[2]);
  }
  return counters;
}

/**
 * Runs `op(i)` from `concurrency` closed-loop callers for DURATION_MS (after a warm-up); returns
 * ops/s, latency percentiles, the CPU time per operation of this process and of Redis (whole
 * processes: I/O included; what the machine's other load disturbs least), the time Redis spent
 * in scripts per operation, and operations per script call.
 */
async function measure(concurrency, op, admin) {
  const state = { running: true, recording: false, count: 0, sequence: 0 };
  const loop = async () => {
    while (state.running) {
      const i = state.sequence++;
      const start = performance.now();
      await op(i);
      if (state.recording && state.count < latencies.length) latencies[state.count++] = performance.now() - start;
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
  const redisBefore = await redisCounters(admin);
  const cpuBefore = process.cpuUsage();
  state.recording = true;
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, DURATION_MS));
  state.recording = false;
  const elapsed = performance.now() - started;
  const recorded = state.count;
  const cpu = process.cpuUsage(cpuBefore);
  const redisAfter = await redisCounters(admin);
  state.running = false;
  await Promise.all(loops);
  const sorted = latencies.subarray(0, recorded).toSorted();
  const at = (q) => sorted[Math.min(recorded - 1, Math.floor(q * recorded))];
  return {
    perSecond: (recorded / elapsed) * 1000,
    p50: at(0.5),
    p99: at(0.99),
    nodeUs: (cpu.user + cpu.system) / recorded,
    redisCpuUs: ((redisAfter.cpu - redisBefore.cpu) * 1e6) / recorded,
    scriptUs: (redisAfter.usec - redisBefore.usec) / recorded,
    perCall: recorded / (redisAfter.calls - redisBefore.calls),
  };
}

const redis = await startRedis();
const admin = new Redis(redis.url, { lazyConnect: true });
await admin.connect();

// The rows, set up once each and measured in interleaved rounds: noise from other processes on
// the machine spreads over every row instead of landing on a few; each row reports its median round.
const rows = [];
const row = (group, name, concurrency, setup) => rows.push({ group, name, concurrency, setup, rounds: [] });
for (const concurrency of [1, 256]) {
  for (const pipelining of [false, true]) {
    row('raw', `ioredis EVALSHA "return 1", auto-pipelining ${pipelining ? 'on' : 'off'}`, concurrency, async () => {
      const client = new Redis(redis.url, { lazyConnect: true, enableAutoPipelining: pipelining });
      await client.connect();
      const sha = await client.script('LOAD', 'return 1');
      return { op: () => client.evalsha(sha, 0), close: () => client.quit() };
    });
  }
  for (const hot of [false, true]) {
    for (const algorithm of ALGORITHMS) {
      row('ours', `RedisStore ${algorithm}, ${hot ? 'one hot key' : `${DISTINCT_KEYS / 1000}k keys`}`, concurrency, async () => {
        const store = new RedisStore({ url: redis.url, commandTimeout: 2_000 });
        await store.init();
        const limits = [{ name: 'default', algorithm, limit: 1e9, windowMs: 60_000, burst: 1e9 }];
        return { op: (i) => store.consume(hot ? 'hot' : `k${i % DISTINCT_KEYS}`, limits, 1, 'consume', 0), close: () => store.close() };
      });
    }
    for (const pipelining of [false, true]) {
      row('anchor', `rate-limiter-flexible consume, ${hot ? 'one hot key' : `${DISTINCT_KEYS / 1000}k keys`}, auto-pipelining ${pipelining ? 'on' : 'off'}`, concurrency, async () => {
        const client = new Redis(redis.url, { lazyConnect: true, enableAutoPipelining: pipelining });
        await client.connect();
        const limiter = new RateLimiterRedis({ storeClient: client, points: 1e9, duration: 60, keyPrefix: 'rlf' });
        return { op: (i) => limiter.consume(hot ? 'hot' : `k${i % DISTINCT_KEYS}`), close: () => client.quit() };
      });
    }
  }
}

try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const entry of rows) {
      await admin.flushall();
      const { op, close } = await entry.setup();
      entry.rounds.push(await measure(entry.concurrency, op, admin));
      await close();
    }
    console.log(`round ${round + 1}/${ROUNDS} done`);
  }
} finally {
  await admin.quit();
  await redis.stop();
}

const median = (values) => values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)];
const results = rows.map((entry) => ({
  group: entry.group,
  name: entry.name,
  concurrency: entry.concurrency,
  perSecond: median(entry.rounds.map((round) => round.perSecond)),
  p50: median(entry.rounds.map((round) => round.p50)),
  p99: median(entry.rounds.map((round) => round.p99)),
  scriptUs: median(entry.rounds.map((round) => round.scriptUs)),
  perCall: median(entry.rounds.map((round) => round.perCall)),
  nodeUs: median(entry.rounds.map((round) => round.nodeUs)),
  redisCpuUs: median(entry.rounds.map((round) => round.redisCpuUs)),
}));
for (const result of results) {
  console.log(`${result.group.padEnd(7)} ${result.name.padEnd(70)} c=${String(result.concurrency).padStart(3)} ${result.perSecond.toFixed(0).padStart(8)}/s  p50 ${result.p50.toFixed(3)} ms  p99 ${result.p99.toFixed(3)} ms  script ${result.scriptUs.toFixed(2)} µs/op (${result.perCall.toFixed(1)} op/call)  CPU/op: Node ${result.nodeUs.toFixed(2)} µs, Redis ${result.redisCpuUs.toFixed(2)} µs`);
}

// The report: each of ours against the best raw ceiling and the best anchor of the same concurrency.
const best = (group, concurrency, filter = () => true) =>
  results.filter((result) => result.group === group && result.concurrency === concurrency && filter(result)).reduce((a, b) => (b.perSecond > (a?.perSecond ?? 0) ? b : a), undefined);
const fmt = (value) => `${Math.round(value).toLocaleString('en-US')}`;
const ms = (value) => value.toFixed(3);
const lines = [];
for (const concurrency of [1, 256]) {
  const raw = best('raw', concurrency);
  lines.push('', `### ${concurrency === 1 ? 'One caller' : '256 concurrent callers'} (c = ${concurrency})`, '');
  lines.push(
    '| row | decisions/s | p50 ms | p99 ms | decisions per script call | script µs/decision | CPU µs/decision: Node | CPU µs/decision: Redis | ÷ raw ceiling | ÷ rate-limiter-flexible (same keys) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const result of results.filter((candidate) => candidate.concurrency === concurrency)) {
    const hot = result.name.includes('hot key');
    const anchor = best('anchor', concurrency, (candidate) => candidate.name.includes('hot key') === hot);
    const vsRaw = (result.perSecond / raw.perSecond).toFixed(2);
    const vsAnchor = result.group === 'raw' ? '' : (result.perSecond / anchor.perSecond).toFixed(2);
    lines.push(
      `| ${result.group}: ${result.name} | ${fmt(result.perSecond)} | ${ms(result.p50)} | ${ms(result.p99)} | ${result.perCall.toFixed(1)} | ${result.scriptUs.toFixed(2)} | ${result.nodeUs.toFixed(2)} | ${result.redisCpuUs.toFixed(2)} | ${vsRaw} | ${vsAnchor} |`,
    );
  }
}
const ours256 = results.filter((result) => result.group === 'ours' && result.concurrency === 256);
const raw256 = best('raw', 256);
const ours1 = results.filter((result) => result.group === 'ours' && result.concurrency === 1);
const raw1 = best('raw', 1);
const anchorFor = (result) => best('anchor', result.concurrency, (candidate) => candidate.name.includes('hot key') === result.name.includes('hot key'));
const range = (values) => `${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)}`;
const anchors256 = results.filter((result) => result.group === 'anchor' && result.concurrency === 256);
const summary =
  `At c = 256 our decisions reach ${range(ours256.map((result) => result.perSecond / raw256.perSecond))} × the raw ceiling (${raw256.name}) ` +
  `and ${range(ours256.map((result) => result.perSecond / anchorFor(result).perSecond))} × rate-limiter-flexible (its better setting, same keys). ` +
  `CPU per decision, Node / Redis: ours ${range(ours256.map((result) => result.nodeUs))} / ${range(ours256.map((result) => result.redisCpuUs))} µs, ` +
  `rate-limiter-flexible ${range(anchors256.map((result) => result.nodeUs))} / ${range(anchors256.map((result) => result.redisCpuUs))} µs, ` +
  `raw ${raw256.nodeUs.toFixed(2)} / ${raw256.redisCpuUs.toFixed(2)} µs. ` +
  `At c = 1: ${range(ours1.map((result) => result.perSecond / raw1.perSecond))} × the raw ceiling and ${range(ours1.map((result) => result.perSecond / anchorFor(result).perSecond))} × rate-limiter-flexible; ` +
  `a lone decision waits for its script's own run in Redis (${range(ours1.map((result) => result.scriptUs))} µs, against ${raw1.scriptUs.toFixed(2)} µs for "return 1"), ` +
  `and its CPU per decision is mostly the cost of waking up for each answer. Target: ≥ 0.90 × the raw ceiling and ahead of rate-limiter-flexible.`;
const version = (name) => JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')).version;
const ioredisVersion = JSON.parse(readFileSync(new URL('../../node_modules/ioredis/package.json', import.meta.url), 'utf8')).version;
const section = [
  '<!-- redis:start -->',
  '## Redis (`npm run bench:redis`)',
  '',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown'}, Node ${process.version}, Redis ${redis.version} on loopback, ` +
    `ioredis ${ioredisVersion}, rate-limiter-flexible ${version('rate-limiter-flexible')}. One process, closed-loop callers; each row is the median of ${ROUNDS} interleaved rounds of ${DURATION_MS} ms (after a ${WARMUP_MS} ms warm-up); ` +
    `every decision admitted (limit 10⁹ per minute), with its write. "Raw ceiling": the best raw EVALSHA row of the same concurrency. ` +
    `"Script µs/decision": time inside EVAL/EVALSHA (Redis commandstats; wall time, so it grows when the machine is busy) per decision; ` +
    `our store sends the decisions of one tick with the same limits in one script call ("decisions per script call"). ` +
    `"CPU µs/decision": user + system CPU of the bench process and of redis-server over the measured window (I/O included), per decision.`,
  '',
  summary,
  ...lines,
  '<!-- redis:end -->',
].join('\n');
// BENCH_WRITE=0: print only, leave bench/RESULTS.md as it is.
if (process.env.BENCH_WRITE === '0') {
  console.log(`\n${summary}`);
  process.exit(0);
}
const file = new URL('../RESULTS.md', import.meta.url);
let doc = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n\nFigures from this machine; ratios taken in one run are what count.\n';
doc = doc.includes('<!-- redis:start -->') ? doc.replace(/<!-- redis:start -->[\s\S]*<!-- redis:end -->/, section) : `${doc.trimEnd()}\n\n${section}\n`;
writeFileSync(file, doc);
console.log(`\n${summary}\nwrote ${fileURLToPath(file)}`);
