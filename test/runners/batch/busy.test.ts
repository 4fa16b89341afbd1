/**
 * A busy cluster, counted: a burst of queued containers through a real
 * Dispatcher on FakeArvados and the LSF runner, whose commands go to an
 * in-memory LSF (same output formats as LSF 10.1) that records when each
 * command started. Nothing here asserts on wall-clock durations: in-flight
 * containers are sampled on every dispatcher event, scheduler commands are
 * counted per sliding window, and the lock order is read from the events.
 * `bench/busy.mjs` runs the same scenario with 500 containers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type Container } from '../../../src/index.js';
import { FakeArvados, TestClock } from '../../../src/testing/index.js';
import { LsfRunner } from '../../../src/runners/batch/lsf/adapter.js';
import { CommandLimiter } from '../../../src/runners/batch/limiter.js';
import type { RunResult } from '../../../src/runners/batch/adapter.js';
import type { CommandRunner } from '../../../src/runners/batch/commands.js';
import { waitFor } from '../../helpers/wait.js';

/** Most starts found in any window of `periodMs` (half-open), `slack` ms narrower to absorb timer jitter. */
function maxInWindow(starts: readonly number[], periodMs: number, slack = 1): number {
  const s = [...starts].sort((a, b) => a - b);
  let best = 0;
  let j = 0;
  for (let i = 0; i < s.length; i++) {
    while (s[i] - s[j] >= periodMs - slack) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

interface FakeJob {
  id: number;
  name: string;
  stat: 'PEND' | 'RUN' | 'DONE';
  priority: number;
  since: number;
}

/**
 * An LSF that holds its job table in memory: bsub queues, a job starts
 * (its container goes Running) after `runAfter` ms pending and ends (its
 * container Complete) after `runFor` ms running. Every command is recorded
 * with its start time.
 */
class MemoryLsf {
  readonly calls: Array<{ cmd: string; args: readonly string[]; at: number }> = [];
  readonly #jobs = new Map<number, FakeJob>();
  #next = 100;
  readonly #timer: NodeJS.Timeout;

  constructor(fake: FakeArvados, runAfter: number, runFor: number) {
    this.#timer = setInterval(() => {
      const now = performance.now();
      for (const j of this.#jobs.values()) {
        if (j.stat === 'PEND' && now - j.since >= runAfter) {
          j.stat = 'RUN';
          j.since = now;
          fake.startContainer(j.name);
        } else if (j.stat === 'RUN' && now - j.since >= runFor) {
          j.stat = 'DONE';
          fake.completeContainer(j.name);
        }
      }
    }, 10);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Commands that go through the runner's limiter: all but the queue query. */
  limited(): number[] {
    return this.calls.filter((c) => !(c.cmd === 'bjobs' && !c.args.includes('-a'))).map((c) => c.at);
  }

  count(cmd: string): number {
    return this.calls.filter((c) => c.cmd === cmd).length;
  }

  readonly run: CommandRunner = (cmd, args) => {
    this.calls.push({ cmd, args, at: performance.now() });
    const ok = (stdout: string): Promise<RunResult> => Promise.resolve({ code: 0, signal: null, stdout, stderr: '' });
    if (cmd === 'bsub') {
      const name = args[args.indexOf('-J') + 1];
      const id = this.#next++;
      this.#jobs.set(id, { id, name, stat: 'PEND', priority: 0, since: performance.now() });
      return ok(`Job <${id}> is submitted to default queue <normal>.\n`);
    }
    if (cmd === 'bjobs') {
      const all = args.includes('-a');
      const ids = args.filter((a) => /^\d+$/.test(a)).map(Number);
      const jobs = ids.length ? ids.map((id) => this.#jobs.get(id)).filter((j) => j !== undefined) : [...this.#jobs.values()];
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

describe('CommandLimiter on a busy cluster', () => {
  it('never starts more than `count` commands in any window of the period, the first burst included', async () => {
    // On a test clock: start times are exact, so no window needs slack.
    const clock = new TestClock(0);
    const limiter = new CommandLimiter(100, { count: 10, periodMs: 200 }, clock);
    const starts: number[] = [];
    const all = Promise.all(Array.from({ length: 45 }, () => limiter.run(async () => void starts.push(clock.now()))));
    while (starts.length < 45) if (!(await clock.next())) await clock.settle();
    await all;
    // A bucket refilled continuously lets 19 through in the first 200 ms.
    expect(maxInWindow(starts, 200, 0)).toBe(10);
    expect(starts).toEqual([0, 200, 400, 600, 800].flatMap((t) => Array<number>(t < 800 ? 10 : 5).fill(t)));
  });
});

describe('A burst of queued containers (max-jobs and the submit rate)', () => {
  const N = 60;
  // Room for more submissions than the rate allows, so both limits bind.
  const MAX_JOBS = 25;
  const RATE = { count: 10, periodMs: 500 };
  let fake: FakeArvados | undefined;
  let lsf: MemoryLsf | undefined;
  let d: Dispatcher | undefined;
  let secretsDir: string | undefined;

  afterEach(async () => {
    await d?.stop();
    lsf?.stop();
    await fake?.stop();
    if (secretsDir) rmSync(secretsDir, { recursive: true, force: true });
  });

  it('holds in-flight containers to the cap and commands to the rate, and hands every container over in priority order', async () => {
    fake = await new FakeArvados().start();
    // Distinct priorities, created out of order.
    const containers: Container[] = fake.addContainers(N, (i) => ({ priority: 1 + ((i * 37) % N) }));
    lsf = new MemoryLsf(fake, 50, 50);
    secretsDir = mkdtempSync(join(tmpdir(), 'busy-secrets-'));
    const runner = new LsfRunner({ runner: lsf.run, user: 'crunch', queueInterval: 100, queueIntervalMax: 400, submitRate: RATE, secretsDir });
    d = new Dispatcher({ client: fake.client(), runner, pollInterval: 100, maxJobs: MAX_JOBS, handleSignals: false, shutdownTimeout: 5_000 });

    const inFlight: number[] = [];
    const lockedOrder: number[] = [];
    let adopted = 0;
    let atQuotaCycles = 0;
    const sample = (): void => {
      const held = fake!.containers('Locked').length + fake!.containers('Running').length;
      inFlight.push(Math.max(d!.status.runners, held));
    };
    for (const e of ['cycle', 'locked', 'adopted', 'settled', 'released', 'stream-ended', 'warning', 'idle'] as const) d.on(e, sample);
    d.on('locked', (c) => lockedOrder.push(c.priority));
    d.on('adopted', () => adopted++);
    d.on('cycle', (st) => void (st.atQuota && atQuotaCycles++));
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    void d.run();

    await waitFor(() => containers.every((c) => fake!.container(c.uuid)?.state === 'Complete'), 'every container Complete', 60_000);

    expect(Math.max(...inFlight)).toBe(MAX_JOBS);
    expect(inFlight.length).toBeGreaterThan(3 * N);
    expect(atQuotaCycles).toBeGreaterThan(0);
    // Every container locked once, highest priority first, none adopted or let go.
    expect(lockedOrder).toEqual([...lockedOrder].sort((a, b) => b - a));
    expect(lockedOrder).toHaveLength(N);
    expect(adopted).toBe(0);
    expect(fake.count('containers.unlock')).toBe(0);
    // One bsub per container, and the limiter's commands within the rate in every window.
    expect(lsf.count('bsub')).toBe(N);
    expect(maxInWindow(lsf.limited(), RATE.periodMs)).toBe(RATE.count);
    // Many containers followed at once are no reason for Node to warn of a listener leak on stderr.
    process.off('warning', onWarning);
    expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
  });
});
