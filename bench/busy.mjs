// A busy cluster, counted (node bench/busy.mjs, after npm run build): a burst
// of N queued containers on FakeArvados, dispatched by a real Dispatcher and
// the LSF runner, whose commands go to an in-memory LSF (LSF 10.1's output
// formats) that records when each command started. A job pends for PEND_MS,
// runs for RUN_MS (its container Running, then Complete), then leaves.
//
// Figures are counts, not timings: in-flight containers sampled on every
// dispatcher event (against --max-jobs), scheduler commands in the busiest
// sliding window of the rate's period (against --submit-rate), the lock order
// (against priority order), unlocks. The section "Busy cluster" of
// bench/results.md is replaced with the figures (--quick: N=100, printed only).
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { Dispatcher } from '../dist/index.js';
import { LsfRunner } from '../dist/runners/batch/lsf/adapter.js';
import { FakeArvados } from '../dist/testing/index.js';

const QUICK = process.argv.includes('--quick');
const N = QUICK ? 150 : 500;
const PEND_MS = 200;
const RUN_MS = 500;
const RATE = { count: 20, periodMs: 1000 };

/** Most starts in any half-open window of `periodMs`. */
function maxInWindow(starts, periodMs) {
  const s = [...starts].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < s.length; i++) {
    while (s[i] - s[j] >= periodMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

/** An LSF holding its job table in memory; every command is recorded with its start time. */
class MemoryLsf {
  calls = [];
  #jobs = new Map();
  #next = 100;
  #timer;

  constructor(fake) {
    this.#timer = setInterval(() => {
      const now = performance.now();
      for (const j of this.#jobs.values()) {
        if (j.stat === 'PEND' && now - j.since >= PEND_MS) {
          j.stat = 'RUN';
          j.since = now;
          fake.startContainer(j.name);
        } else if (j.stat === 'RUN' && now - j.since >= RUN_MS) {
          j.stat = 'DONE';
          fake.completeContainer(j.name);
        }
      }
    }, 10);
  }

  stop() {
    clearInterval(this.#timer);
  }

  run = (cmd, args) => {
    this.calls.push({ cmd, args, at: performance.now() });
    const ok = (stdout) => Promise.resolve({ code: 0, signal: null, stdout, stderr: '' });
    if (cmd === 'bsub') {
      const id = this.#next++;
      this.#jobs.set(id, { id, name: args[args.indexOf('-J') + 1], stat: 'PEND', priority: 0, since: performance.now() });
      return ok(`Job <${id}> is submitted to default queue <normal>.\n`);
    }
    if (cmd === 'bjobs') {
      const all = args.includes('-a');
      const ids = args.filter((a) => /^\d+$/.test(a)).map(Number);
      const jobs = ids.length ? ids.map((id) => this.#jobs.get(id)).filter(Boolean) : [...this.#jobs.values()];
      const records = jobs
        .filter((j) => all || j.stat !== 'DONE')
        .map((j) => ({
          JOBID: String(j.id),
          STAT: j.stat,
          JOB_NAME: j.name,
          PEND_REASON: j.stat === 'PEND' ? 'New job is waiting for scheduling;' : '',
          JOB_PRIORITY: String(j.priority),
          EXIT_CODE: j.stat === 'DONE' ? '0' : '',
          EXIT_REASON: '',
        }));
      return ok(JSON.stringify({ COMMAND: 'bjobs', JOBS: records.length, RECORDS: records }));
    }
    if (cmd === 'bkill') {
      for (const a of args) this.#jobs.delete(Number(a));
      return ok(args.map((a) => `Job <${a}> is being terminated\n`).join(''));
    }
    if (cmd === 'bmod') {
      const job = this.#jobs.get(Number(args[2]));
      if (job) job.priority = Number(args[1]);
      return ok(`Parameters of job <${args[2]}> are being changed\n`);
    }
    return Promise.resolve({ code: 127, signal: null, stdout: '', stderr: `${cmd}: not found` });
  };
}

async function scenario(maxJobs) {
  const fake = await new FakeArvados({ requestLog: false }).start();
  // Distinct priorities, created out of order.
  const containers = fake.addContainers(N, (i) => ({ priority: 1 + ((i * 211) % N) }));
  const lsf = new MemoryLsf(fake);
  const runner = new LsfRunner({ runner: lsf.run, user: 'crunch', queueInterval: 500, submitRate: RATE });
  const d = new Dispatcher({ client: fake.client(), runner, pollInterval: 500, handleSignals: false, ...(maxJobs ? { maxJobs } : {}) });
  let maxInFlight = 0;
  let samples = 0;
  const order = [];
  let atQuotaCycles = 0;
  let cycles = 0;
  const sample = () => {
    samples++;
    const held = fake.containers('Locked').length + fake.containers('Running').length;
    maxInFlight = Math.max(maxInFlight, d.status.runners, held);
  };
  for (const e of ['cycle', 'locked', 'adopted', 'settled', 'released', 'stream-ended', 'warning', 'idle']) d.on(e, sample);
  d.on('locked', (c) => order.push(c.priority));
  d.on('cycle', (st) => {
    cycles++;
    if (st.atQuota) atQuotaCycles++;
  });
  const t0 = performance.now();
  void d.run();
  while (!containers.every((c) => fake.container(c.uuid)?.state === 'Complete')) await new Promise((r) => setTimeout(r, 50));
  const seconds = (performance.now() - t0) / 1000;
  await d.stop();
  lsf.stop();
  const limited = lsf.calls.filter((c) => !(c.cmd === 'bjobs' && !c.args.includes('-a')));
  const kinds = {};
  for (const c of limited) {
    const k = c.cmd === 'bjobs' ? 'bjobs -a' : c.cmd;
    kinds[k] = (kinds[k] ?? 0) + 1;
  }
  let inversions = 0;
  for (let i = 1; i < order.length; i++) if (order[i] > order[i - 1]) inversions++;
  const r = {
    maxJobs: maxJobs ?? 'none',
    seconds,
    maxInFlight,
    samples,
    locked: order.length,
    inversions,
    unlocks: fake.count('containers.unlock'),
    bsub: kinds.bsub ?? 0,
    kinds,
    limited: limited.length,
    maxWindow: maxInWindow(limited.map((c) => c.at), RATE.periodMs),
    queueQueries: lsf.calls.length - limited.length,
    rate: limited.length / seconds,
    atQuotaCycles,
    cycles,
  };
  await fake.stop();
  return r;
}

const fmt = (x, d = 2) => x.toFixed(d);
const results = [];
for (const maxJobs of QUICK ? [50] : [100, undefined]) {
  const r = await scenario(maxJobs);
  results.push(r);
  console.log(JSON.stringify(r));
}

const lines = [];
const out = (s = '') => lines.push(s);
out('## Busy cluster');
out();
out(`Machine: ${cpus()[0]?.model.replace(/\s+/g, ' ').trim()} x ${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`);
out(`(\`node bench/busy.mjs\` after \`npm run build\`.) ${N} queued containers with distinct priorities on FakeArvados, a real Dispatcher`);
out(`(poll 500 ms) and the LSF runner (bjobs every 500 ms, --submit-rate ${RATE.count}/${RATE.periodMs / 1000}s, 3 commands at once) against an in-memory`);
out(`LSF; each job pends ${PEND_MS} ms and runs ${RUN_MS} ms. In flight: Locked + Running containers (and runContainer calls), sampled on every`);
out('dispatcher event. Commands: every scheduler command but the queue query (bsub, bmod, bkill, bjobs -a), by start time.');
out();
out('| --max-jobs | max in flight | samples | locked | priority inversions | unlocks | bsub | limiter commands (bsub/bmod/bkill/bjobs -a) | max in any 1 s window | limit | mean per s | queue queries | cycles at quota | seconds |');
out('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  const k = r.kinds;
  out(
    `| ${r.maxJobs} | ${r.maxInFlight} | ${r.samples} | ${r.locked} | ${r.inversions} | ${r.unlocks} | ${r.bsub} | ${r.limited} (${k.bsub ?? 0}/${k.bmod ?? 0}/${k.bkill ?? 0}/${k['bjobs -a'] ?? 0}) | ${r.maxWindow} | ${RATE.count} | ${fmt(r.rate)} | ${r.queueQueries} | ${r.atQuotaCycles} of ${r.cycles} | ${fmt(r.seconds, 1)} |`,
  );
}
out();
out('Targets: max in flight <= --max-jobs; max in any window <= the rate; every container locked once, highest priority first');
out('(0 inversions); no unlocks; one bsub per container. Seconds are for information: with a 20/1s limit, 500 submissions');
out('alone take at least 25 s, and the renice (bmod) and accounting (bjobs -a) commands share the same budget.');
out('`none` is the library\'s default (the CLI\'s slurm, lsf and sge commands default to --max-jobs 1000): every container is');
out('locked at once and waits Locked for its turn at the limiter, out of reach of any other dispatcher.');

const text = lines.join('\n') + '\n';
if (QUICK) {
  process.stdout.write(text);
} else {
  const path = new URL('./results.md', import.meta.url);
  const old = readFileSync(path, 'utf8');
  const start = old.indexOf('## Busy cluster');
  let next = start < 0 ? -1 : old.indexOf('\n## ', start + 1);
  const before = start < 0 ? `${old.replace(/\n*$/, '')}\n\n` : old.slice(0, start);
  const after = next < 0 ? '' : `\n${old.slice(next + 1)}`;
  writeFileSync(path, before + text + after);
  process.stdout.write(text);
}
