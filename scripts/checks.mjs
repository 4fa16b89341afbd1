// The checks `npm test` runs before Jest, side by side:
//
//   node scripts/checks.mjs <npm script>...
//
// Each check (type check, lint, build, API reference) is one single-threaded
// process that reads the sources on its own; one after another they took
// most of a minute on two cores. As many run at once as the machine has
// cores, in the order given (the longest first). Each one's output is
// printed whole when it ends, so outputs never interleave. Every check runs
// to its end, so that all failures show; the exit status is 1 if any failed.
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';

const names = process.argv.slice(2);
if (names.length === 0) {
  console.error('usage: node scripts/checks.mjs <npm script>...');
  process.exit(2);
}

/** Runs `npm run <name>`, resolving with its exit status, output and time. */
function run(name) {
  const started = performance.now();
  const child = spawn('npm', ['run', '--silent', name], { stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks = [];
  child.stdout.on('data', (d) => chunks.push(d));
  child.stderr.on('data', (d) => chunks.push(d));
  return new Promise((resolve) => {
    child.on('error', (err) => chunks.push(Buffer.from(`${err.message}\n`)));
    child.on('close', (code, signal) => resolve({ name, ok: code === 0, why: signal ?? `exit ${code}`, output: Buffer.concat(chunks), seconds: (performance.now() - started) / 1000 }));
  });
}

const queue = [...names];
let failed = false;
async function worker() {
  for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
    const r = await run(name);
    (r.ok ? process.stdout : process.stderr).write(r.output);
    console.log(`checks: ${r.name} ${r.ok ? 'passed' : `FAILED (${r.why})`} in ${r.seconds.toFixed(1)} s`);
    if (!r.ok) failed = true;
  }
}
await Promise.all(Array.from({ length: Math.min(names.length, availableParallelism()) }, worker));
process.exitCode = failed ? 1 : 0;
