// Summarises .cpuprofile files written by `BENCH_PROFILE=dir npm run bench:http`:
//   node bench/http/profile.mjs <file.cpuprofile>... [--top 30] [--match <regexp>] [--base <file.cpuprofile>]
// Prints where the busy time goes (idle left out): by package, by function (self time) and, for
// functions whose "name file:line" matches --match (default: ours, ` dist/`), inclusive time. With
// the request count run.mjs writes beside each profile, also in µs per request; with --base, the
// functions whose self time per request grew most over the base profile (e.g. the bare app).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const args = process.argv.slice(2);
const option = (flag, fallback) => {
  const index = args.indexOf(flag);
  if (index === -1) return fallback;
  const [value] = args.splice(index, 2).slice(1);
  return value;
};
const top = Number(option('--top', 30));
const match = new RegExp(option('--match', ' dist/'));
const baseFile = option('--base', undefined);

function packageOf(url) {
  if (url === '') return '(native)';
  if (url.startsWith('node:')) return 'node internals';
  if ((url.includes('/dist/') && !url.includes('/node_modules/')) || url.includes('nest-resilience/dist/')) return 'nest-resilience (dist)';
  const at = url.lastIndexOf('/node_modules/');
  if (at !== -1) {
    const rest = url.slice(at + '/node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  return url.includes('/bench/') ? 'bench app' : url;
}

/** "function file:line", the file relative to the repository or to node_modules. */
function name(node) {
  const frame = node.callFrame;
  const where = frame.url ? `${frame.url.replace(/^file:\/\/\/work\/main\//, '').replace(/.*node_modules\//, '')}:${frame.lineNumber + 1}` : '';
  return `${frame.functionName || '(anonymous)'} ${where}`.trim();
}

function analyze(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const self = new Map();
  const inclusive = new Map();
  const byPackage = new Map();
  let busy = 0;
  let idle = 0;
  const deltas = profile.timeDeltas;
  for (let index = 0; index < profile.samples.length; index++) {
    const node = nodes.get(profile.samples[index]);
    const delta = deltas[index + 1] ?? 0;
    const fn = node.callFrame.functionName;
    if (fn === '(idle)') {
      idle += delta;
      continue;
    }
    busy += delta;
    const key = name(node);
    self.set(key, (self.get(key) ?? 0) + delta);
    const pkg = fn === '(garbage collector)' || fn === '(program)' ? fn : packageOf(node.callFrame.url);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + delta);
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const k = name(nodes.get(id));
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + delta);
    }
  }
  // Requests the app answered while profiled (written by run.mjs), for µs per request.
  let requests;
  try {
    requests = JSON.parse(readFileSync(`${file}.requests.json`, 'utf8')).requests;
  } catch {
    requests = undefined;
  }
  return { self, inclusive, byPackage, busy, idle, requests };
}

const sorted = (map) => [...map].toSorted((a, b) => b[1] - a[1]);
const perRequest = (map, n) => new Map([...map].map(([key, time]) => [key, time / n]));
const base = baseFile ? analyze(baseFile) : undefined;

for (const file of args) {
  const { self, inclusive, byPackage, busy, idle, requests } = analyze(file);
  const pct = (value) => `${((value / busy) * 100).toFixed(1).padStart(5)} %${requests ? ` ${(value / requests).toFixed(2).padStart(6)} µs/req` : ''}`;
  console.log(`\n=== ${basename(file)}: ${(busy / 1e6).toFixed(2)} s busy, ${(idle / 1e6).toFixed(2)} s idle${requests ? `, ${requests} requests, ${(busy / requests).toFixed(1)} µs busy per request` : ''}`);
  console.log('\n-- self time by package');
  for (const [pkg, time] of sorted(byPackage).slice(0, 15)) console.log(`${pct(time)}  ${pkg}`);
  console.log(`\n-- top ${top} functions by self time`);
  for (const [key, time] of sorted(self).slice(0, top)) console.log(`${pct(time)}  ${key}`);
  console.log(`\n-- functions matching ${match} by inclusive time`);
  for (const [key, time] of sorted(inclusive).filter(([entry]) => match.test(entry)).slice(0, top)) console.log(`${pct(time)}  ${key}`);
  if (base?.requests && requests) {
    const mine = perRequest(self, requests);
    const theirs = perRequest(base.self, base.requests);
    const growth = new Map([...new Set([...mine.keys(), ...theirs.keys()])].map((key) => [key, (mine.get(key) ?? 0) - (theirs.get(key) ?? 0)]));
    const packages = new Map([...new Set([...byPackage.keys(), ...base.byPackage.keys()])].map((key) => [key, (byPackage.get(key) ?? 0) / requests - (base.byPackage.get(key) ?? 0) / base.requests]));
    console.log(`\n-- over ${basename(baseFile)}: ${(busy / requests - base.busy / base.requests).toFixed(1)} µs busy per request more; by package (µs/req)`);
    for (const [key, delta] of sorted(packages).slice(0, 12)) console.log(`${delta.toFixed(2).padStart(7)}  ${key}`);
    console.log(`\n-- top ${top} functions by growth of self time per request (µs/req)`);
    for (const [key, delta] of sorted(growth).slice(0, top)) console.log(`${delta.toFixed(2).padStart(7)}  ${key}`);
  }
}
