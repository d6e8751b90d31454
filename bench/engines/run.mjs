// Runs every engine row in a child process of its own and writes bench/RESULTS.md's engine table.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BARE_IN_FLIGHT, IN_FLIGHT, decisionRows, inFlightRows, rows } from './rows.mjs';

// BENCH_BASELINE_DIST: another build (e.g. the previous commit's dist) whose memory decisions are
// measured in the same run, row by row next to ours; BENCH_BASELINE_LABEL says what it is.
// BENCH_ROWS: a comma-separated list of row names to run (default: all); the file is then left as is.
const baselineDist = process.env.BENCH_BASELINE_DIST ? resolve(process.env.BENCH_BASELINE_DIST) : undefined;
const baselineLabel = process.env.BENCH_BASELINE_LABEL ?? baselineDist;
const only = process.env.BENCH_ROWS?.split(',').map((name) => name.trim());
const here = fileURLToPath(new URL('.', import.meta.url));
const env = { ...process.env, BENCH_DIST: process.env.BENCH_DIST ? resolve(process.env.BENCH_DIST) : '' };

function runRow(name, dist) {
  const out = execFileSync(process.execPath, ['--expose-gc', 'row.mjs', name], { cwd: here, encoding: 'utf8', env: dist === undefined ? env : { ...env, BENCH_DIST: dist } });
  return JSON.parse(out.trim().split('\n').pop());
}

const results = {};
const baseline = {};
for (const name of [...Object.keys(rows), ...Object.keys(inFlightRows), ...Object.keys(decisionRows)]) {
  if (only !== undefined && !only.includes(name)) continue;
  if (baselineDist !== undefined && name in decisionRows) {
    baseline[name] = runRow(name, baselineDist);
    console.log(`${`${name} [baseline]`.padEnd(62)} ${baseline[name].avg.toFixed(0).padStart(8)} ns  (CPU ${baseline[name].cpu.toFixed(0)} ns)`);
  }
  const row = runRow(name);
  results[name] = row;
  const over = row.bare === undefined ? '' : `  (+${(row.avg - row.bare).toFixed(0)} ns over bare ${row.bare.toFixed(0)} ns)`;
  const cpu = row.cpu === undefined ? '' : `  (CPU ${row.cpu.toFixed(0)} ns)`;
  console.log(`${name.padEnd(62)} ${row.avg.toFixed(0).padStart(8)} ns${over}${cpu}`);
}
if (only !== undefined) process.exit(0);

const ns = (name) => results[name].avg;
const over = (name) => results[name].avg - results[name].bare;
const fmt = (value) => `${value.toFixed(0)} ns`;
const pairs = [
  ['timeout', 'ours: timeout', 'cockatiel: timeout'],
  ['retry', 'ours: retry', 'cockatiel: retry'],
  ['circuit breaker', 'ours: circuit breaker', 'cockatiel: circuit breaker'],
  ['bulkhead', 'ours: bulkhead', 'cockatiel: bulkhead'],
  ['retry + breaker + timeout + bulkhead', 'ours: pipeline of four (retry, breaker, timeout, bulkhead)', 'cockatiel: wrap of four (retry, breaker, timeout, bulkhead)'],
];
const lines = [];
lines.push('| policy | ours, per call | cockatiel 4, per call | ours ÷ cockatiel | ours above bare | target |');
lines.push('|---|---|---|---|---|---|');
for (const [label, a, b] of pairs) {
  const target = label === 'timeout' ? '≤ 1 µs and ≤ cockatiel' : '≤ cockatiel';
  lines.push(`| ${label} | ${fmt(ns(a))} | ${fmt(ns(b))} | ${(ns(a) / ns(b)).toFixed(2)} | ${fmt(over(a))} | ${target} |`);
}
lines.push('');
lines.push('| other rows | per call | above bare `await fn()` | target |');
lines.push('|---|---|---|---|');
const others = [
  ['bare await fn()', ''],
  ['ours: timeout (task reads the signal)', ''],
  ['ours: fallback', ''],
  ['ours: rate limit (memory, one key)', ''],
  ['ours: pipeline of six', '≤ 2 µs above bare'],
  ['opossum: fire (defaults)', 'anchor'],
  ['opossum: fire (timeout off)', 'anchor'],
];
for (const [name, target] of others) lines.push(`| ${name} | ${fmt(ns(name))} | ${fmt(over(name))} | ${target} |`);
lines.push('');
lines.push(`| ${IN_FLIGHT} calls in flight | per call | above the same batch without a policy, per call | ÷ cockatiel | target |`);
lines.push('|---|---|---|---|---|');
for (const name of Object.keys(inFlightRows)) {
  const perCall = ns(name) / IN_FLIGHT;
  const aboveBare = name === BARE_IN_FLIGHT ? '' : fmt(over(name) / IN_FLIGHT);
  const versus = name === `ours: timeout (${IN_FLIGHT} in flight)` ? (ns(name) / ns(`cockatiel: timeout (${IN_FLIGHT} in flight)`)).toFixed(2) : '';
  const target = name.startsWith('ours: timeout') ? '≤ 1 µs and ≤ cockatiel' : name.startsWith('ours: pipeline') ? '≤ 2 µs above bare' : name.startsWith('bare') ? '' : 'anchor';
  lines.push(`| ${name} | ${fmt(perCall)} | ${aboveBare} | ${versus} | ${target} |`);
}
lines.push('');
const withBaseline = baselineDist !== undefined;
lines.push(
  `| memory rate-limit decision (synchronous) | ns per decision (wall) | CPU ns per decision |${withBaseline ? ' baseline build: wall | baseline build: CPU | CPU ÷ baseline |' : ''} target |`,
);
lines.push(`|---|---|---|${withBaseline ? '---|---|---|' : ''}---|`);
for (const name of Object.keys(decisionRows)) {
  const row = results[name];
  const before = baseline[name];
  const target = name.startsWith('floor:') ? 'paid by every decision (the policy reads its clock)' : '≤ 300 ns, flat from 1 to 100k keys';
  const compared = withBaseline ? ` ${fmt(before.avg)} | ${fmt(before.cpu)} | ${(row.cpu / before.cpu).toFixed(2)} |` : '';
  lines.push(`| ${name.replace('decision: ', '')} | ${fmt(row.avg)} | ${fmt(row.cpu)} |${compared} ${target} |`);
}

const cpu = os.cpus()[0]?.model ?? 'unknown';
const packages = (name) => JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')).version;
const section = [
  '<!-- engines:start -->',
  '## Engines (`npm run bench:engines`)',
  '',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ` +
    `cockatiel ${packages('cockatiel')}, opossum ${packages('opossum')}, mitata ${packages('mitata')}. One child process per row; each row's ` +
    'bare `await fn()` is measured in the same process. Task: `async () => 1`; success path (one call at a time, except in the "calls in flight" table). On this shared 2-core machine a row varies by up to ±30 % between runs (the bulkhead rows measured 158–277 ns for ours and 195–207 ns for cockatiel in three runs of one afternoon); compare the "above bare" column, taken in the same process as the row.',
  '',
  'Memory decisions: `RateLimitPolicy.decide(key)` on a `MemoryStore` (maxKeys 200k, every key held before measuring), a limit nobody reaches. "100k keys" takes the keys in turn, so the next key\'s state is the next record in memory; "random order" takes them in a fixed pseudo-random order, as real clients come, and meets cold cache lines on every decision. Wall: mitata\'s mean; CPU: CPU time per decision, least of 5 rounds (steadier while other work shares the machine).' +
    (withBaseline ? ` Baseline build: ${baselineLabel}, measured in the same run, row by row.` : ''),
  '',
  ...lines,
  '<!-- engines:end -->',
].join('\n');

const file = new URL('../RESULTS.md', import.meta.url);
let doc = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n\nFigures from this machine; ratios taken in one run are what count.\n\n<!-- engines:start -->\n<!-- engines:end -->\n';
doc = doc.replace(/<!-- engines:start -->[\s\S]*<!-- engines:end -->/, section);
writeFileSync(file, doc);
console.log(`\nwrote ${fileURLToPath(file)}`);
