// Measures one row and the bare baseline in this process; prints one JSON line.
import { measure } from 'mitata';
import { BARE_IN_FLIGHT, decisionRows, inFlightRows, rows } from './rows.mjs';

const name = process.argv[2];
const all = { ...rows, ...inFlightRows, ...decisionRows };
const make = all[name];
if (!make) throw new Error(`unknown row ${name}`);
const isDecision = name in decisionRows;

/**
 * CPU time per call (user + system), least of `rounds` rounds of ~0.2 s each: on a machine shared
 * with other work, wall time counts the moments this process waited for a core, CPU time does not.
 */
function cpuNs(fn, nsPerCall, rounds = 5) {
  const iterations = Math.max(10_000, Math.round(2e8 / nsPerCall));
  let best = Infinity;
  for (let round = 0; round < rounds; round++) {
    const start = process.cpuUsage();
    for (let i = 0; i < iterations; i++) fn();
    const spent = process.cpuUsage(start);
    best = Math.min(best, ((spent.user + spent.system) * 1000) / iterations);
  }
  return best;
}

// A batch of calls in flight is compared with the same batch without a policy.
const bare = name in inFlightRows ? await inFlightRows[BARE_IN_FLIGHT]() : await rows['bare await fn()']();
const fn = await make();
const options = { min_cpu_time: 500 * 1e6 };
const baseline = isDecision ? undefined : await measure(async () => { await bare(); }, options);
const stats = isDecision ? await measure(() => fn(), options) : await measure(async () => { await fn(); }, options);
const cpu = isDecision ? cpuNs(fn, stats.avg) : undefined;
console.log(JSON.stringify({ name, avg: stats.avg, p50: stats.p50, p99: stats.p99, bare: baseline?.avg, cpu }));
