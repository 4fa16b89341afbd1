// The checks `npm test` runs, side by side:
//
//   node scripts/checks.mjs [--first <npm script>] [--alongside <npm script>] <npm script>...
//
// Each check (type check, lint, build, API reference) is one single-threaded
// process that reads the sources on its own; one after another they took
// most of a minute on two cores. As many run at once as the machine has
// cores, in the order given (the longest first). Each one's output is
// printed whole when it ends, so outputs never interleave. Every check runs
// to its end, so that all failures show; the exit status is 1 if any failed.
//
// --alongside runs one more script (the Jest run) with its output live, and
// the checks beside it one at a time: Jest's workers wait on servers and
// child processes much of the time, and a check fills that idle CPU; more
// than one would take the cores from tests that time real back-off. (Niced,
// they lost to other users' jobs on a shared machine and ran on after Jest:
// 12 s longer, Jest itself no faster.) The checks left when it ends run side
// by side.
// --first runs a check before all others (the build the tests run); if it
// fails, the --alongside script is not run, the other checks still are.
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';

const USAGE = 'usage: node scripts/checks.mjs [--first <npm script>] [--alongside <npm script>] <npm script>...';
const args = process.argv.slice(2);
/** Takes `--flag value` out of args; undefined without the flag, null for a flag without a value. */
const option = (flag) => {
  const at = args.indexOf(flag);
  return at < 0 ? undefined : (args.splice(at, 2)[1] ?? null);
};
const first = option('--first');
let alongside = option('--alongside');
const names = args;
if (names.length === 0 || first === null || alongside === null || names.some((n) => n.startsWith('--'))) {
  console.error(USAGE);
  process.exit(2);
}

/** Runs `npm run <name>`, resolving with its exit status, output and time; `live` passes its output straight through. */
function run(name, { live = false } = {}) {
  const started = performance.now();
  const child = spawn('npm', ['run', '--silent', name], { stdio: ['ignore', live ? 'inherit' : 'pipe', live ? 'inherit' : 'pipe'] });
  const chunks = [];
  child.stdout?.on('data', (d) => chunks.push(d));
  child.stderr?.on('data', (d) => chunks.push(d));
  return new Promise((resolve) => {
    child.on('error', (err) => chunks.push(Buffer.from(`${err.message}\n`)));
    child.on('close', (code, signal) => resolve({ name, ok: code === 0, why: signal ?? `exit ${code}`, output: Buffer.concat(chunks), seconds: (performance.now() - started) / 1000 }));
  });
}

let failed = false;
function report(r) {
  (r.ok ? process.stdout : process.stderr).write(r.output);
  console.log(`checks: ${r.name} ${r.ok ? 'passed' : `FAILED (${r.why})`} in ${r.seconds.toFixed(1)} s`);
  if (!r.ok) failed = true;
}

if (first !== undefined) {
  const r = await run(first);
  report(r);
  if (!r.ok && alongside !== undefined) {
    console.log(`checks: ${alongside} not run (${first} failed)`);
    alongside = undefined;
  }
}

const queue = [...names];
async function worker() {
  for (let name = queue.shift(); name !== undefined; name = queue.shift()) report(await run(name));
}
const cores = Math.min(names.length, availableParallelism());
const workers = (n) => Array.from({ length: n }, worker);
if (alongside) {
  // Once it ends, the checks left take every core.
  const main = run(alongside, { live: true }).then((r) => {
    report(r);
    return Promise.all(workers(cores - 1));
  });
  await Promise.all([main, ...workers(1)]);
} else {
  await Promise.all(workers(cores));
}
process.exitCode = failed ? 1 : 0;
