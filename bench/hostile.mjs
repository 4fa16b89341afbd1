// Hostile run (node bench/hostile.mjs [--quick]; needs `npm run build`).
//
// The built CLI, `arvados-dispatch local`, dispatches N containers from a
// FakeArvados in this process, with the crunch-run simulator as crunch-run
// (a quarter of them in leak-token mode, printing the token in every shape
// it can; the rest complete). Every hostile fault kind and every ordinary one
// but `hang` (which only measures the client's 30 s timeout) is served on the
// dispatcher's routes: hostile kinds on 20% of its requests (endless bodies
// on 3% of list requests), ordinary ones on 10% of the rest.
// crunch-run's own routes (containers get/update) are left alone: a
// simulator that cannot report progress is not what is measured here.
//
// Reported: containers, fraction completed, containers cancelled by us, runs
// per container, crunch-runs started for a uuid that is not a container of
// the run, the dispatcher's peak RSS (VmHWM), its exit status after SIGTERM,
// faults served per kind, and token fragments found: every 8-character piece
// of the token's secret searched in all of the dispatcher's stdout and
// stderr and in every `logs` record (must be 0).
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FakeArvados, HOSTILE_FAULTS, ORDINARY_FAULTS, crunchRunSimPath } from '../dist/testing/index.js';

const QUICK = process.argv.includes('--quick');
const N = QUICK ? 40 : 200;
const HOSTILE_RATE = 0.2;
const ORDINARY_RATE = 0.1;
// --no-endless: the same run without endless bodies, to see what they cost in memory.
const ENDLESS_RATE = process.argv.includes('--no-endless') ? 0 : 0.03;
const TIME_LIMIT = 150_000;
const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const DISPATCHER_ROUTES = ['current', 'containers.list', 'containers.lock', 'containers.unlock', 'logs.create'];
const SECRET = 'benchhostilesecret0123456789abcdefghijklmnopqrstuv';
const TOKEN_UUID = 'zzzzz-gj3su-benchh0st1le000';

// Hostile kinds on 20% of the dispatcher's requests (uniformly among the
// kinds that apply to the route), ordinary kinds on 10% of the rest, and
// `bad-identity` on half of the identity requests (retried: a GET; the seed
// makes the first one a user's uuid, the second good). `endless` has a rule of its
// own at 3% of list requests: each one streams the client's whole default
// cap (144 MiB) through TLS before it fails, which would otherwise make the
// run CPU-bound on a small machine.
const faults = [
  { rate: 0.5, kinds: ['bad-identity'], routes: ['current'], seed: 8036 },
  { rate: ENDLESS_RATE, kinds: ['endless'], routes: ['containers.list'], seed: 8004 },
  { rate: HOSTILE_RATE, kinds: HOSTILE_FAULTS.filter((k) => k !== 'endless'), routes: DISPATCHER_ROUTES, seed: 8002 },
  { rate: ORDINARY_RATE, kinds: ORDINARY_FAULTS.filter((k) => k !== 'hang'), routes: DISPATCHER_ROUTES, seed: 8003, retryAfter: 0 },
];

const fake = await new FakeArvados({ faults, recordRequests: true }).start();
fake.addToken({ uuid: TOKEN_UUID, token: SECRET });
const token = `v2/${TOKEN_UUID}/${SECRET}`;

const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-bench-hostile-'));
const records = join(dir, 'records');
const crunchRun = join(dir, 'crunch-run');
mkdirSync(records);
writeFileSync(crunchRun, `#!${process.execPath}\nimport { simulateCrunchRun } from ${JSON.stringify(pathToFileURL(crunchRunSimPath).href)};\nawait simulateCrunchRun();\n`);
chmodSync(crunchRun, 0o755);

const cs = fake.addContainers(N, (i) => ({
  priority: 1 + (i % 7),
  runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 },
  environment: { CRUNCH_RUN_SIM_MODE: i % 4 === 0 ? 'leak-token' : 'complete', CRUNCH_RUN_SIM_WORK: '200' },
}));
const mine = new Set(cs.map((c) => c.uuid));

const started = performance.now();
const child = spawn(
  process.execPath,
  [MAIN, 'local', '--poll-interval', '200ms', '--crunch-run-command', crunchRun, `--crunch-run-arg=--record=${records}`, '--vcpus', '8', '--ram', '8GiB'],
  { env: { PATH: process.env.PATH ?? '', HOME: dir, ...fake.env(token) }, stdio: ['ignore', 'pipe', 'pipe'] },
);
let stdout = '';
let stderr = '';
child.stdout.on('data', (d) => (stdout += d.toString()));
child.stderr.on('data', (d) => (stderr += d.toString()));
const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));

// VmHWM: the peak resident set of the dispatcher process, kept by the kernel.
let peakKiB = 0;
const readPeak = () => {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
    if (m) peakKiB = Math.max(peakKiB, Number(m[1]));
  } catch {
    // the process is gone; the last reading stands
  }
};
const sampler = setInterval(readPeak, 250);

const finished = () => cs.every((c) => ['Complete', 'Cancelled'].includes(fake.container(c.uuid)?.state));
let exitedEarly = false;
child.once('exit', () => (exitedEarly = true));
while (!finished() && !exitedEarly && performance.now() - started < TIME_LIMIT) await new Promise((r) => setTimeout(r, 100));
const seconds = (performance.now() - started) / 1000;
readPeak();
// Cancellations before our SIGTERM are the dispatcher's doing; those after
// it (containers still running when the time limit hit) are the stop's.
const cancelledBeforeStop = fake.transitions.filter((t) => mine.has(t.uuid) && t.to === 'Cancelled').length;
const stillUp = !exitedEarly;
child.kill('SIGTERM');
const exit = await exited;
clearInterval(sampler);

const states = cs.map((c) => fake.container(c.uuid)?.state);
const complete = states.filter((s) => s === 'Complete').length;
const cancelled = cancelledBeforeStop;
const cancelledAtStop = fake.transitions.filter((t) => mine.has(t.uuid) && t.to === 'Cancelled').length - cancelledBeforeStop;
const maxRuns = Math.max(...cs.map((c) => fake.runCount(c.uuid)));
const startedFor = readdirSync(records).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
const foreign = startedFor.filter((u) => !mine.has(u)).length;
const served = {};
for (const r of fake.requests) if (r.fault !== undefined) served[r.fault] = (served[r.fault] ?? 0) + 1;
const dispatcherRequests = fake.requests.filter((r) => DISPATCHER_ROUTES.includes(r.route)).length;
const text = [stdout, stderr, ...fake.logs.map((l) => JSON.stringify(l))].join('\n');
const pieces = [];
for (let i = 0; i + 8 <= SECRET.length; i++) if (text.includes(SECRET.slice(i, i + 8))) pieces.push(SECRET.slice(i, i + 8));
const masked = (stdout.match(/\*\*\*/g) ?? []).length;

// HOSTILE_OUT=<file> keeps the dispatcher's output and the container states, to look into a run.
if (process.env.HOSTILE_OUT) {
  const ends = cs.map((c) => `${c.uuid} ${fake.container(c.uuid)?.state} ${fake.transitions.filter((t) => t.uuid === c.uuid).map((t) => t.to).join('>')}`);
  writeFileSync(process.env.HOSTILE_OUT, `${stdout}\n--- stderr\n${stderr}\n--- containers\n${ends.join('\n')}\n`);
}
await fake.stop();
rmSync(dir, { recursive: true, force: true });

const result = {
  containers: N,
  completed: complete / N,
  notFinishedAtStop: N - complete - cancelled,
  cancelledByUs: cancelled,
  cancelledAtStop,
  maxRunsPerContainer: maxRuns,
  crunchRunsForForeignUuids: foreign,
  peakRssMiB: Math.round(peakKiB / 1024),
  stayedUp: stillUp,
  exitAfterSigterm: exit.code,
  seconds: Math.round(seconds * 10) / 10,
  dispatcherRequests,
  faultsServed: served,
  tokenFragmentsFound: pieces.length,
  maskedSecretsInOutput: masked,
  outputBytes: stdout.length + stderr.length,
  logsRecords: fake.logs.length,
};
console.log(JSON.stringify(result, null, 2));
const ok = result.completed === 1 && cancelled === 0 && foreign === 0 && pieces.length === 0 && stillUp && exit.code === 0;
if (!ok) {
  console.error('HOSTILE RUN FAILED: see the figures above');
  process.exitCode = 1;
}
