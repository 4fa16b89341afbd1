// Fail-over soak (node bench/failover.mjs, after npm run build; needs a
// PostgreSQL, see scripts/postgres-up.sh): two `arvados-dispatch lsf`
// processes with the same config, one holding the cluster lock, the other
// waiting on it; N short containers on FakeArvados; the active dispatcher is
// killed with SIGKILL at random points, KILLS times, and a new standby is
// started each time. LSF is the test suite's stand-in (test/runners/lsf/bin:
// a job table in a directory, jobs run detached on this host, so they
// outlive the dispatcher that submitted them, as jobs in a real scheduler
// do); crunch-run is the package's simulator.
//
// Reports the take-over time (SIGKILL to the standby holding the lock, and
// to its first submission or adoption), and counts containers run twice
// (more than one bsub for a container, or more than one start), lost (not
// Complete at the end) and cancelled. The section "Fail-over soak" of
// bench/results.md is replaced with the figures (--quick: N=60, 3 kills,
// printed only).
//
// Environment: ARVADOS_DISPATCH_TEST_PG (default the scripts/postgres-up.sh
// database), FAILOVER_SEED (default random).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { FakeArvados } from '../dist/testing/index.js';

const QUICK = process.argv.includes('--quick');
const N = QUICK ? 60 : 300;
const KILLS = QUICK ? 3 : 5;
const MAX_JOBS = 20;
const PG_URL = process.env.ARVADOS_DISPATCH_TEST_PG ?? 'postgresql://arvados_dispatch_test:xyzzy-lock-test@127.0.0.1:5432/arvados_test';
const SEED = Number(process.env.FAILOVER_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const LSF_BIN = fileURLToPath(new URL('../test/runners/lsf/bin', import.meta.url));
const STUB = fileURLToPath(new URL('../test/fixtures/slurm-crunch-run.mjs', import.meta.url));
const RESULTS = fileURLToPath(new URL('./results.md', import.meta.url));

// mulberry32: a seeded PRNG, so a run can be repeated with FAILOVER_SEED.
let state = SEED >>> 0;
function random() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

async function waitFor(check, what, timeoutMs = 300_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function pgAvailable() {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    return undefined;
  } catch (err) {
    return err.message;
  } finally {
    await c.end().catch(() => {});
  }
}

const why = await pgAvailable();
if (why) {
  console.log(`fail-over soak skipped: PostgreSQL does not answer (${why}); run scripts/postgres-up.sh as root`);
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-failover-'));
const table = join(dir, 'lsf');
const fake = await new FakeArvados().start();
const u = new URL(PG_URL);
const config = join(dir, 'config.yml');
writeFileSync(
  config,
  `Clusters:\n  zzzzz:\n    PostgreSQL:\n      Connection:\n        host: ${u.hostname}\n        port: "${u.port || 5432}"\n        user: ${decodeURIComponent(u.username)}\n        password: ${decodeURIComponent(u.password)}\n        dbname: ${u.pathname.slice(1)}\n        sslmode: disable\n`,
  { mode: 0o600 },
);

/** One dispatcher process and what it said. */
class Dispatcher {
  events = [];
  constructor(name) {
    this.name = name;
    this.child = spawn(
      process.execPath,
      [
        MAIN, 'lsf', '--config', config, '--json', '--status-interval', '0',
        '--poll-interval', '500ms', '--bjobs-interval', '500ms', '--max-jobs', String(MAX_JOBS),
        '--bsub-sudo-user', '', '--crunch-run-command', process.execPath, `--crunch-run-arg=${STUB}`,
      ],
      { env: { PATH: `${LSF_BIN}:${process.env.PATH}`, HOME: dir, LSF_STUB_DIR: table, ...fake.env() }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let buf = '';
    this.child.stdout.on('data', (d) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.events.push({ at: Date.now(), ...JSON.parse(line) });
        } catch {
          // not JSON: ignore
        }
      }
    });
    this.stderr = '';
    this.child.stderr.on('data', (d) => {
      if (this.stderr.length < 100_000) this.stderr += d.toString();
    });
    this.exited = new Promise((resolve) => this.child.on('exit', resolve));
  }

  /** Whether it holds the lock now (its last lock event says so). */
  get holding() {
    const last = this.events.filter((e) => e.event === 'cluster-lock').at(-1);
    return last?.state === 'held';
  }

  /** When it first held the lock after `t`, if it did. */
  heldAfter(t) {
    return this.events.find((e) => e.event === 'cluster-lock' && e.state === 'held' && e.at >= t)?.at;
  }

  /** When it first locked, adopted or submitted a container after `t`. */
  workedAfter(t) {
    return this.events.find((e) => e.at >= t && ['locked', 'adopted', 'submitted'].includes(e.event))?.at;
  }
}

const started = Date.now();
for (let i = 0; i < N; i++) {
  fake.addContainer({
    priority: 1 + (i % 50),
    runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 },
    environment: { STUB_MODE: 'complete', STUB_RUN_MS: String(200 + Math.floor(random() * 800)) },
  });
}
const uuids = fake.containers().map((c) => c.uuid);
const done = () => uuids.filter((id) => ['Complete', 'Cancelled'].includes(fake.container(id)?.state)).length;

let seq = 0;
const live = [new Dispatcher(`d${seq++}`), new Dispatcher(`d${seq++}`)];
const all = [...live];
const takeovers = [];
// Kill points: after KILLS random numbers of finished containers, spread over the run.
const points = Array.from({ length: KILLS }, () => Math.floor(N * (0.08 + random() * 0.8))).sort((a, b) => a - b);
try {
  await waitFor(() => live.some((d) => d.holding), 'a dispatcher holding the lock', 60_000);
  for (const point of points) {
    await waitFor(() => done() >= point, `${point} containers finished`);
    // A random moment within the next second, so kills do not line up with polls.
    await new Promise((r) => setTimeout(r, Math.floor(random() * 1000)));
    const active = live.find((d) => d.holding);
    if (!active) throw new Error('no dispatcher holds the lock');
    const standby = live.find((d) => d !== active);
    const t = Date.now();
    active.child.kill('SIGKILL');
    await active.exited;
    live.splice(live.indexOf(active), 1);
    const held = await waitFor(() => standby.heldAfter(t), 'the standby holding the lock', 60_000).catch((err) => {
      for (const d of all) console.error(`--- ${d.name} (exit ${d.child.exitCode ?? d.child.signalCode ?? 'running'})\n${d.stderr.slice(-3000)}\n${d.events.filter((e) => e.event === 'cluster-lock').map((e) => JSON.stringify(e)).join('\n')}`);
      throw err;
    });
    const worked = done() < N ? await waitFor(() => standby.workedAfter(t) ?? (done() >= N ? -1 : undefined), 'the standby at work', 60_000) : -1;
    // The next standby starts once the take-over is done, so that the one measured is the one that was waiting.
    const fresh = new Dispatcher(`d${seq++}`);
    live.push(fresh);
    all.push(fresh);
    takeovers.push({ at: point, lockMs: held - t, workMs: worked > 0 ? worked - t : undefined, killed: active.name, by: standby.name });
    console.log(`kill ${takeovers.length}/${KILLS} at ${point}/${N} finished: ${standby.name} held the lock after ${held - t} ms${worked > 0 ? `, first lock/adoption/submission after ${worked - t} ms` : ''}`);
  }
  await waitFor(() => done() >= N, 'every container finished', 600_000);
} finally {
  for (const d of live) d.child.kill('SIGTERM');
  await Promise.all(live.map((d) => d.exited));
}
const elapsed = Date.now() - started;

// What the stub LSF recorded: one bsub per container, unless a submission was duplicated.
const bsubs = new Map();
for (const line of readFileSync(join(table, 'calls.log'), 'utf8').split('\n')) {
  if (!line) continue;
  const call = JSON.parse(line);
  if (call.command !== 'bsub') continue;
  const j = call.args.indexOf('-J');
  const name = j >= 0 ? call.args[j + 1] : undefined;
  if (name) bsubs.set(name, (bsubs.get(name) ?? 0) + 1);
}
const twice = uuids.filter((id) => (bsubs.get(id) ?? 0) > 1 || fake.runCount(id) > 1);
for (const id of twice) console.log(`run twice: ${id}: ${bsubs.get(id) ?? 0} bsub(s), ${fake.runCount(id)} start(s); lock count ${fake.container(id)?.lock_count}`);
const lost = uuids.filter((id) => fake.container(id)?.state !== 'Complete' && fake.container(id)?.state !== 'Cancelled');
const cancelled = uuids.filter((id) => fake.container(id)?.state === 'Cancelled');
await fake.stop();
rmSync(dir, { recursive: true, force: true });

const lockMs = takeovers.map((t) => t.lockMs);
const workMs = takeovers.map((t) => t.workMs).filter((x) => x !== undefined);
const lines = [
  '## Fail-over soak',
  '',
  `\`node bench/failover.mjs\` (seed ${SEED}): two \`arvados-dispatch lsf\` processes with one config and the cluster lock on PostgreSQL 15, ` +
    `${N} containers (200–1000 ms of simulated work each, \`--max-jobs ${MAX_JOBS}\`, polls every 500 ms), the active dispatcher killed with SIGKILL ${KILLS} times ` +
    `at random points, a new standby started each time; ${cpus().length} CPUs, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}; ${Math.round(elapsed / 1000)} s in all.`,
  '',
  '| measure | result |',
  '|---|---|',
  `| take-over: SIGKILL to the standby holding the lock | p50 ${quantile(lockMs, 0.5)} ms, max ${Math.max(...lockMs)} ms |`,
  `| take-over: SIGKILL to its first lock, adoption or submission | p50 ${workMs.length ? quantile(workMs, 0.5) : '–'} ms, max ${workMs.length ? Math.max(...workMs) : '–'} ms |`,
  `| containers run twice (two bsubs, or two starts) | ${twice.length} |`,
  `| containers lost (not finished at the end) | ${lost.length} |`,
  `| containers cancelled | ${cancelled.length} |`,
  '',
  'The standby tries the lock every 5 s, as Arvados\' dispatchers do, so the take-over is at most one retry after the dead session ends; the kernel closes a killed process\'s connection at once, so PostgreSQL frees the lock at once.',
  '',
];
const text = lines.join('\n');
console.log(`\n${text}`);
if (!QUICK && twice.length + lost.length + cancelled.length === 0) {
  const old = readFileSync(RESULTS, 'utf8');
  const start = old.indexOf('## Fail-over soak');
  const next = start >= 0 ? old.indexOf('\n## ', start + 1) : -1;
  const updated = start < 0 ? `${old.trimEnd()}\n\n${text}` : `${old.slice(0, start)}${text}${next >= 0 ? old.slice(next + 1) : ''}`;
  writeFileSync(RESULTS, updated);
}
process.exit(twice.length + lost.length + cancelled.length === 0 ? 0 : 1);
