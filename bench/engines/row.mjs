// Measures one row and the bare baseline in this process; prints one JSON line.
import { measure } from 'mitata';
import { decisionRows, rows } from './rows.mjs';

const name = process.argv[2];
const all = { ...rows, ...decisionRows };
const make = all[name];
if (!make) throw new Error(`unknown row ${name}`);
const isDecision = name in decisionRows;

const bare = await rows['bare await fn()']();
const fn = await make();
const options = { min_cpu_time: 500 * 1e6 };
const baseline = isDecision ? undefined : await measure(async () => { await bare(); }, options);
const stats = isDecision ? await measure(() => fn(), options) : await measure(async () => { await fn(); }, options);
console.log(JSON.stringify({ name, avg: stats.avg, p50: stats.p50, p99: stats.p99, bare: baseline?.avg }));
