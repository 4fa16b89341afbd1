// The Slurm runner with a real Dispatcher on FakeArvados and an in-memory
// Slurm behind the injectable command runner (fake-slurm.ts). Every wait is
// for a condition (a state, a number of squeue runs), never for a time.
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, RunnerConfigError, type Container, type DispatcherOptions } from '../../../src/index.js';
import { FakeArvados } from '../../../src/testing/index.js';
import { SlurmRunner, type SlurmRunnerOptions } from '../../../src/runners/batch/slurm/index.js';
import type { LostJob } from '../../../src/runners/batch/job-context.js';
import { runWithInput } from '../../helpers/exec.js';
import { waitFor } from '../../helpers/wait.js';
import { FakeSlurm, type FakeCall, type FakeJob } from './fake-slurm.js';

const MiB = 1024 * 1024;
const SMALL = { runtime_constraints: { ram: 64 * MiB, vcpus: 1 } };

interface Harness {
  fake: FakeArvados;
  slurm: FakeSlurm;
  runner: SlurmRunner;
  d: Dispatcher;
  warnings: string[];
  settled: Map<string, unknown>;
  lost: LostJob[];
  run: Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A fresh secrets directory for one runner. */
function secretsDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'slurm-secrets-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'job-secrets');
}

async function startFake(): Promise<FakeArvados> {
  const fake = await new FakeArvados().start();
  cleanups.push(() => fake.stop());
  return fake;
}

/** A runner and dispatcher on `fake` and `slurm`, with short intervals. */
function startDispatcher(
  fake: FakeArvados,
  slurm: FakeSlurm,
  opts: { runner?: SlurmRunnerOptions; dispatcher?: Partial<DispatcherOptions>; attach?: boolean } = {},
): Harness {
  const runner = new SlurmRunner({
    runner: slurm.runner,
    squeueUser: 'crunch',
    queueInterval: 15,
    vanishGrace: { misses: 2, ms: 0 },
    submitRetry: { initialDelay: 5, maxDelay: 40 },
    commandTimeout: 5_000,
    secretsDir: secretsDir(),
    ...opts.runner,
  });
  const common = {
    client: fake.client({ retryDelay: 5, maxRetryDelay: 20, timeout: 5_000 }),
    pollInterval: 15,
    handleSignals: false,
    shutdownTimeout: 5_000,
    ...opts.dispatcher,
  };
  // attach: false gives only runContainer, which attaches on its first call.
  const d = opts.attach === false ? new Dispatcher({ ...common, runContainer: runner.runContainer }) : new Dispatcher({ ...common, runner });
  const warnings: string[] = [];
  const settled = new Map<string, unknown>();
  const lost: LostJob[] = [];
  runner.on('warning', (m) => warnings.push(m));
  runner.on('lost', (l) => lost.push(l));
  d.on('settled', (uuid, err) => settled.set(uuid, err));
  const run = d.run();
  cleanups.push(async () => {
    await d.stop();
    await run.catch(() => undefined);
    await runner.close();
  });
  return { fake, slurm, runner, d, warnings, settled, lost, run };
}

async function setup(opts: { runner?: SlurmRunnerOptions; dispatcher?: Partial<DispatcherOptions> } = {}): Promise<Harness> {
  const fake = await startFake();
  return startDispatcher(fake, new FakeSlurm(), opts);
}

/** crunch-run as the fake Slurm runs it: Running on start; Cancelled and gone on SIGTERM. */
function simulateCrunchRun(fake: FakeArvados, slurm: FakeSlurm, opts: { start?: (job: FakeJob) => boolean } = {}): void {
  slurm.onSubmit = (job) => {
    if (job.state !== 'RUNNING' || opts.start?.(job) === false) return;
    setImmediate(() => {
      if (fake.container(job.name)?.state === 'Locked') fake.startContainer(job.name);
    });
  };
  slurm.onSignal = (job) => {
    const c = fake.container(job.name);
    if (c?.state === 'Running') fake.updateAs(job.name, { state: 'Cancelled' });
    slurm.jobs.delete(job.id);
  };
}

/** crunch-run finishing: Complete in the API, then the job leaves the queue. */
function finishJob(h: Harness, uuid: string): void {
  h.fake.completeContainer(uuid);
  h.slurm.finish(uuid);
}

/** Waits for `n` more successful squeue runs of the monitor. */
async function polls(slurm: FakeSlurm, n: number): Promise<void> {
  const ok = (): number => slurm.polls().filter((c) => c.result?.code === 0).length;
  const target = ok() + n;
  await waitFor(() => ok() >= target, `${n} squeue runs`);
}

function state(h: Harness, uuid: string): string | undefined {
  return h.fake.container(uuid)?.state;
}

function unlocks(h: Harness, uuid: string): number {
  return h.fake.transitions.filter((t) => t.uuid === uuid && t.from === 'Locked' && t.to === 'Queued').length;
}

/** For every sbatch after the first, a squeue run that started after the previous sbatch ended and ended before it. */
function checkedBetween(calls: FakeCall[], sbatches: FakeCall[]): boolean {
  return sbatches.slice(1).every((sb, i) => {
    const prev = sbatches[i];
    return calls.some(
      (c) => c.cmd === 'squeue' && c.result?.code === 0 && c.start > (prev.end ?? Infinity) && (c.end ?? Infinity) < sb.start,
    );
  });
}

describe('SlurmRunner: submission', () => {
  it('submits a Locked container once, with the script, arguments and environment, and follows it to the end', async () => {
    const h = await setup({
      runner: {
        crunchRunCommand: '/usr/bin/crunch-run',
        crunchRunArgs: ['--debug', "it's"],
        runtimeEngine: 'singularity',
        jobOutputDir: '/var/log/crunch%dir',
      },
    });
    simulateCrunchRun(h.fake, h.slurm);
    const submitted: Array<[string, string, string | undefined]> = [];
    h.runner.on('submitted', (uuid, result, id) => submitted.push([uuid, result, id]));
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');

    const [sb] = h.slurm.callsOf('sbatch');
    expect(sb.args).toEqual([
      '--nice=10000',
      '--no-requeue',
      '--chdir=/var/log/crunch%dir',
      '--output=/var/log/crunch%%dir/crunch-run-%x-%j.out',
      `--job-name=${c.uuid}`,
      '--mem=614',
      '--cpus-per-task=1',
      '--tmp=0',
    ]);
    // The script reads the job's secrets file, deletes it and execs crunch-run.
    const file = join(h.runner.options.secretsDir, `${c.uuid}.env`);
    expect(sb.options.input).toBe(
      `#!/bin/sh\nf='${file}'\n` +
        'if ! [ -r "$f" ]; then echo "arvados-dispatch: cannot read the job secrets file $f (is its directory shared with this node?)" >&2; exit 1; fi\n' +
        `set -a\n. "$f" || exit 1\nset +a\nrm -f "$f"\nexec '/usr/bin/crunch-run' '--debug' 'it'\\''s' '--runtime-engine=singularity' '${c.uuid}'\n`,
    );
    const env = sb.options.env ?? {};
    const token = h.fake.rootToken.token;
    // No secret in what the scheduler stores or shows: argv, script, exported environment.
    expect(JSON.stringify([sb.args, sb.options.input, env])).not.toContain(token.split('/').pop());
    expect(Object.keys(env)).not.toEqual(expect.arrayContaining(['ARVADOS_API_TOKEN']));
    expect(env).not.toHaveProperty('GatewayAuthSecret');
    expect(env.PATH).toBeTruthy();
    // The file: 0600 in a 0700 directory, the credentials, no GatewayAuthSecret without a system root token.
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(h.runner.options.secretsDir).mode & 0o777).toBe(0o700);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain(`ARVADOS_API_TOKEN='${token}'\n`);
    expect(text).toContain(`ARVADOS_API_HOST='${h.fake.apiHost}'\n`);
    expect(text).not.toContain('GatewayAuthSecret');
    expect(submitted).toEqual([[c.uuid, 'ok', String(h.slurm.byName(c.uuid)[0].id)]]);

    finishJob(h, c.uuid);
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.settled.get(c.uuid)).toBeUndefined();
    expect(state(h, c.uuid)).toBe('Complete');
    expect(h.slurm.callsOf('sbatch')).toHaveLength(1);
    expect(h.slurm.callsOf('scancel')).toHaveLength(0);
    expect(h.lost).toEqual([]);
    expect(h.warnings).toEqual([]);
    // Gone with the job.
    await waitFor(() => !existsSync(file), 'secrets file deleted');
  });

  it('keys GatewayAuthSecret by the systemRootToken option, never by the API token', async () => {
    const h = await setup({ runner: { systemRootToken: 'xyzzy-systemroottoken' } });
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => h.slurm.callsOf('sbatch').length === 1, 'sbatch');
    const text = readFileSync(join(h.runner.options.secretsDir, `${c.uuid}.env`), 'utf8');
    expect(text).toContain(`GatewayAuthSecret='${createHmac('sha256', 'xyzzy-systemroottoken').update(c.uuid).digest('hex')}'\n`);
    expect(JSON.stringify(h.slurm.callsOf('sbatch')[0])).not.toContain('xyzzy');
  });

  it.each([
    ['transient', { code: 1, stderr: 'sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n' }],
    ['fatal-looking', { code: 1, stderr: '' }],
    ['killed', { code: null, signal: 'SIGTERM' as const, stderr: '' }],
  ])('does not submit again after an sbatch that failed (%s) but reached Slurm', async (_kind, result) => {
    const h = await setup();
    simulateCrunchRun(h.fake, h.slurm);
    let n = 0;
    h.slurm.sbatchHook = () => (n++ === 0 ? { submit: true, result: { ...result, stdout: '' } } : undefined);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    await polls(h.slurm, 3);
    expect(h.slurm.callsOf('sbatch')).toHaveLength(1);
    expect(h.slurm.byName(c.uuid)).toHaveLength(1);
    // The queue was looked at after the failed sbatch.
    const sbEnd = h.slurm.callsOf('sbatch')[0].end ?? Infinity;
    expect(h.slurm.polls().some((p) => p.start > sbEnd && p.result?.code === 0)).toBe(true);
    finishJob(h, c.uuid);
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.settled.get(c.uuid)).toBeUndefined();
    expect(h.fake.logs).toEqual([]);
    expect(unlocks(h, c.uuid)).toBe(0);
  });

  it('retries transient failures with backoff, checking the queue before each attempt', async () => {
    const h = await setup();
    simulateCrunchRun(h.fake, h.slurm);
    let n = 0;
    h.slurm.sbatchHook = () =>
      n++ < 2
        ? { submit: false, result: { code: 1, stderr: 'sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n' } }
        : undefined;
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    const sbatches = h.slurm.callsOf('sbatch');
    expect(sbatches).toHaveLength(3);
    expect(checkedBetween(h.slurm.calls, sbatches)).toBe(true);
    // Before retrying, the record is checked: still Locked by us.
    expect(h.fake.requests.filter((r) => r.route === 'containers.get' && r.uuid === c.uuid).length).toBeGreaterThanOrEqual(2);
    expect(h.warnings.filter((w) => /failed \(transient\).*Unable to contact slurm controller.*retrying in \d+ ms/.test(w))).toHaveLength(2);
    expect(unlocks(h, c.uuid)).toBe(0);
    finishJob(h, c.uuid);
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
  });

  it('stops retrying when the container is cancelled meanwhile', async () => {
    const h = await setup({ runner: { submitRetry: { initialDelay: 60_000, maxDelay: 60_000 } } });
    h.slurm.sbatchHook = () => ({ submit: false, result: { code: 1, stderr: 'sbatch: error: Socket timed out on send/recv operation' } });
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => h.slurm.callsOf('sbatch').length === 1, 'first sbatch');
    h.fake.setPriority(c.uuid, 0);
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.settled.get(c.uuid)).toBeUndefined();
    expect(h.slurm.callsOf('sbatch')).toHaveLength(1);
    await waitFor(() => state(h, c.uuid) === 'Queued', 'unlocked by the dispatcher');
  });

  it('pauses every submission on a submit limit, without failing containers, and resumes when a job leaves', async () => {
    const h = await setup({ runner: { submitRetry: { initialDelay: 5, maxDelay: 60_000 } } });
    simulateCrunchRun(h.fake, h.slurm);
    const refusal = {
      code: 1,
      stderr: "sbatch: error: AssocMaxSubmitJobLimit\nsbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)\n",
    };
    // A limit of one queued job.
    h.slurm.sbatchHook = () => (h.slurm.jobs.size >= 1 ? { submit: false, result: refusal } : undefined);
    const commands: Array<{ command: string; result: string; errorClass?: string }> = [];
    h.runner.on('command', (r) => commands.push(r));
    const cs = [3, 2, 1].map((priority) => h.fake.addContainer({ priority, ...SMALL }));
    const done = new Set<string>();
    await waitFor(() => h.runner.status.atQuota && h.slurm.jobs.size === 1, 'paused with one job queued');
    expect(commands).toContainEqual(expect.objectContaining({ command: 'sbatch', result: 'error', errorClass: 'backpressure' }));
    expect(commands).toContainEqual(expect.objectContaining({ command: 'squeue', result: 'ok' }));
    expect(cs.map((c) => h.runner.schedulingStatus(c.uuid))).toContain('Slurm: submissions paused (at quota)');
    // A submission already in flight when the pause began may still meet the limit; let it land.
    await polls(h.slurm, 2);
    const refusedSoFar = h.slurm.callsOf('sbatch').length;
    await polls(h.slurm, 5);
    // Paused: nobody tried again.
    expect(h.slurm.callsOf('sbatch')).toHaveLength(refusedSoFar);
    expect(h.warnings.some((w) => /pausing submissions/.test(w))).toBe(true);

    while (done.size < cs.length) {
      const job = await waitFor(() => [...h.slurm.jobs.values()].find((j) => !done.has(j.name)), 'a queued job');
      await waitFor(() => state(h, job.name) === 'Running', 'Running');
      done.add(job.name);
      finishJob(h, job.name);
    }
    for (const c of cs) await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    for (const c of cs) {
      expect(state(h, c.uuid)).toBe('Complete');
      expect(unlocks(h, c.uuid)).toBe(0);
      expect(h.settled.get(c.uuid)).toBeUndefined();
    }
    expect(h.fake.logs).toEqual([]);
    // One success per container; refusals only when a probe or an in-flight submission met the limit.
    const sbatches = h.slurm.callsOf('sbatch');
    expect(sbatches.filter((s) => s.result?.code === 0)).toHaveLength(3);
    expect(sbatches.length).toBeLessThanOrEqual(3 + 2 + 2);
    expect(h.runner.status.atQuota).toBe(false);
  });

  it('releases the container on a fatal sbatch failure (after checking the queue), with the reason in its log, and it is requeued', async () => {
    const h = await setup({ dispatcher: { minRetryPeriod: 60_000 } });
    h.slurm.sbatchHook = () => ({
      submit: false,
      result: { code: 1, stderr: 'sbatch: error: invalid partition specified: nosuch\nsbatch: error: Batch job submission failed: Invalid partition name specified\n' },
    });
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.settled.get(c.uuid)).toBeUndefined();
    await waitFor(() => state(h, c.uuid) === 'Queued', 'unlocked');
    await waitFor(() => h.fake.logs.length > 0, 'log record');
    expect(h.fake.logs[0]).toMatchObject({ object_uuid: c.uuid, event_type: 'dispatch' });
    expect(String(h.fake.logs[0].properties.text)).toMatch(/Slurm refused the job: sbatch: error: Batch job submission failed: Invalid partition name specified/);
    const [sb] = h.slurm.callsOf('sbatch');
    expect(h.slurm.callsOf('sbatch')).toHaveLength(1);
    expect(h.slurm.polls().some((p) => p.start > (sb.end ?? Infinity) && p.result?.code === 0)).toBe(true);
  });

  it('rejects at once with a RunnerConfigError when sbatch cannot be started, without waiting for the queue', async () => {
    const fake = await startFake();
    const slurm = new FakeSlurm();
    const missing = '/nonexistent/bin/sbatch';
    const runner: SlurmRunnerOptions['runner'] = (cmd, args, o) => {
      if (cmd !== missing) return slurm.runner(cmd, args, o);
      // From now on the queue is unknown: the runner must not wait for it.
      slurm.squeueFails = true;
      return Promise.reject(Object.assign(new Error(`spawn ${missing} ENOENT`), { code: 'ENOENT' }));
    };
    const h = startDispatcher(fake, slurm, { runner: { runner, commands: { sbatch: missing } }, dispatcher: { minRetryPeriod: 60_000 } });
    const c = fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.settled.get(c.uuid)).toBeInstanceOf(RunnerConfigError);
    expect(String(h.settled.get(c.uuid))).toMatch(/submitting container \S+ to Slurm failed \(configuration\): spawn \/nonexistent\/bin\/sbatch ENOENT/);
  });

  it('refuses a bad argument template at construction, before any dispatcher or lock', () => {
    expect(() => new SlurmRunner({ sbatchArgs: ['--comment=%Z'] })).toThrow(/unknown substitution %Z/);
  });

  it('reports an option sbatch does not know as a RunnerConfigError (our configuration, no attempt charged)', async () => {
    const h = await setup({ dispatcher: { minRetryPeriod: 60_000 }, runner: { sbatchArgs: ['--comment=x'] } });
    h.slurm.sbatchHook = () => ({ submit: false, result: { code: 1, stderr: "sbatch: unrecognized option '--comment=x'\n" } });
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.settled.get(c.uuid)).toBeInstanceOf(RunnerConfigError);
    expect(h.slurm.callsOf('sbatch')).toHaveLength(1);
    await waitFor(() => state(h, c.uuid) === 'Queued', 'unlocked');
  });

  describe('text a container controls never classifies a failure', () => {
    it.each([['x Permission denied'], ['x try again'], ['x MaxSubmitJobs']])(
      'cancels a container with partitions [%j] before any sbatch, and dispatching goes on',
      async (partition) => {
        const h = await setup({ dispatcher: { minRetryPeriod: 60_000 } });
        simulateCrunchRun(h.fake, h.slurm);
        const bad = h.fake.addContainer({ priority: 2, ...SMALL, scheduling_parameters: { partitions: [partition] } });
        await waitFor(() => state(h, bad.uuid) === 'Cancelled', 'Cancelled');
        expect(String(h.fake.container(bad.uuid)?.runtime_status?.error)).toMatch(/invalid partition name/);
        expect(h.settled.get(bad.uuid)).toBeUndefined();
        const good = h.fake.addContainer({ priority: 1, ...SMALL });
        await waitFor(() => state(h, good.uuid) === 'Running', 'the next container Running');
        expect(h.slurm.callsOf('sbatch').map((c) => c.args.find((a) => a.startsWith('--job-name=')))).toEqual([`--job-name=${good.uuid}`]);
        expect(h.runner.status.atQuota).toBe(false);
      },
    );

    it('cuts an echoed value out before classifying: a valid-looking MaxSubmitJobs partition neither pauses nor stops anything', async () => {
      const h = await setup({ dispatcher: { minRetryPeriod: 60_000 } });
      simulateCrunchRun(h.fake, h.slurm);
      h.slurm.sbatchHook = (args) =>
        args.includes('--partition=MaxSubmitJobs')
          ? { submit: false, result: { code: 1, stderr: 'sbatch: error: invalid partition specified: MaxSubmitJobs\nsbatch: error: Batch job submission failed: Invalid partition name specified\n' } }
          : undefined;
      const classes: Array<string | undefined> = [];
      h.runner.on('command', (r) => r.command === 'sbatch' && classes.push(r.errorClass));
      const bad = h.fake.addContainer({ priority: 2, ...SMALL, scheduling_parameters: { partitions: ['MaxSubmitJobs'] } });
      await waitFor(() => unlocks(h, bad.uuid) >= 1, 'released as fatal');
      // The metrics say so too.
      expect(classes).toEqual(['fatal']);
      expect(h.runner.status.atQuota).toBe(false);
      expect(h.settled.get(bad.uuid)).toBeUndefined();
      const good = h.fake.addContainer({ priority: 1, ...SMALL });
      await waitFor(() => state(h, good.uuid) === 'Running', 'the next container Running');
    });

    it('needs evidence beyond one container: a configuration or back-pressure refusal of a container with partitions is retried, bounded, then unlocked', async () => {
      const h = await setup({ dispatcher: { minRetryPeriod: 60_000 }, runner: { submitRetry: { initialDelay: 5, maxDelay: 10, maxAttempts: 3 } } });
      simulateCrunchRun(h.fake, h.slurm);
      const refusals = ['sbatch: error: Batch job submission failed: Access/permission denied', 'sbatch: error: MaxSubmitJobsPerUser', 'sbatch: error: Batch job submission failed: try again'];
      let n = 0;
      h.slurm.sbatchHook = (args) => (args.includes('--partition=p1') ? { submit: false, result: { code: 1, stderr: `${refusals[n++ % 3]}\n` } } : undefined);
      const bad = h.fake.addContainer({ priority: 2, ...SMALL, scheduling_parameters: { partitions: ['p1'] } });
      await waitFor(() => unlocks(h, bad.uuid) >= 1, 'unlocked after the bound');
      expect(h.slurm.callsOf('sbatch').length).toBeGreaterThanOrEqual(3);
      expect(h.settled.get(bad.uuid)).toBeUndefined();
      expect(h.runner.status.atQuota).toBe(false);
      expect(h.warnings.some((w) => /giving up after 3 attempts/.test(w))).toBe(true);
      // Locking and submitting go on for the others.
      const good = h.fake.addContainer({ priority: 3, ...SMALL });
      await waitFor(() => state(h, good.uuid) === 'Running', 'the next container Running');
    });

    it('takes the same configuration refusal for containers that chose different partitions as evidence', async () => {
      const h = await setup({ dispatcher: { minRetryPeriod: 60_000 }, runner: { submitRetry: { initialDelay: 5, maxDelay: 10, maxAttempts: 50 } } });
      h.slurm.sbatchHook = () => ({ submit: false, result: { code: 1, stderr: 'sbatch: error: Batch job submission failed: Access/permission denied\n' } });
      const a = h.fake.addContainer({ priority: 2, ...SMALL, scheduling_parameters: { partitions: ['p1'] } });
      const b = h.fake.addContainer({ priority: 1, ...SMALL, scheduling_parameters: { partitions: ['p2'] } });
      await waitFor(() => h.settled.has(a.uuid) || h.settled.has(b.uuid), 'a runner settled');
      const err = h.settled.get(a.uuid) ?? h.settled.get(b.uuid);
      expect(err).toBeInstanceOf(RunnerConfigError);
    });
  });

  it('does not submit a container whose priority is already 0, and cancels its job if one exists', async () => {
    const fake = await startFake();
    const slurm = new FakeSlurm();
    const me = fake.rootToken.uuid;
    const bare = fake.addContainer({ state: 'Locked', locked_by_uuid: me, priority: 0, ...SMALL });
    const queued = fake.addContainer({ state: 'Locked', locked_by_uuid: me, priority: 0, ...SMALL });
    slurm.initialState = 'PENDING';
    slurm.add(queued.uuid);
    const h = startDispatcher(fake, slurm);
    await waitFor(() => h.settled.has(bare.uuid) && h.settled.has(queued.uuid), 'runners settled');
    expect(slurm.callsOf('sbatch')).toHaveLength(0);
    expect(slurm.has(queued.uuid)).toBe(false);
    const job = String(slurm.calls.find((c) => c.cmd === 'scancel')?.args.at(-1));
    expect(slurm.callsOf('scancel').every((c) => c.args.at(-1) === job)).toBe(true);
    await waitFor(() => state(h, bare.uuid) === 'Queued' && state(h, queued.uuid) === 'Queued', 'both unlocked');
  });

  it('keeps at most 3 Slurm commands running at once', async () => {
    const h = await setup();
    h.slurm.delayMs = 20;
    h.slurm.initialState = 'PENDING';
    const cs = h.fake.addContainers(8, { priority: 1, ...SMALL });
    await waitFor(() => cs.every((c) => h.slurm.has(c.uuid)), 'all submitted');
    expect(h.slurm.maxConcurrent).toBe(3);
  });

  it('refuses a container UUID that is not one before running anything', async () => {
    const fake = await startFake();
    const slurm = new FakeSlurm();
    const h = startDispatcher(fake, slurm, { attach: false });
    const bad = { uuid: "zzzzz-dz642-$(touch /tmp/x)'", state: 'Locked', priority: 1, locked_by_uuid: null } as Container;
    const never = { signal: new AbortController().signal, endReason: undefined, [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<Container>>(() => {}) }) };
    await expect(h.runner.runContainer(h.d, bad, never)).rejects.toThrow(TypeError);
    expect(slurm.calls).toEqual([]);
  });
});

describe('SlurmRunner: cancelling', () => {
  it('cancels on priority 0 with scancel by job id (SIGTERM to the batch step), and settles once the job is gone', async () => {
    const h = await setup();
    simulateCrunchRun(h.fake, h.slurm);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    const job = h.slurm.byName(c.uuid)[0];
    h.fake.setPriority(c.uuid, 0);
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(state(h, c.uuid)).toBe('Cancelled');
    expect(job.signals).toEqual(['TERM']);
    expect(h.slurm.callsOf('scancel').map((s) => s.args)).toEqual([['--batch', '--signal=TERM', '--state=running', String(job.id)]]);
    expect(h.lost).toEqual([]);
  });

  it('repeats scancel on each snapshot until the job leaves the queue', async () => {
    const h = await setup();
    simulateCrunchRun(h.fake, h.slurm);
    let terms = 0;
    // A crunch-run that needs three SIGTERMs.
    h.slurm.onSignal = (job) => {
      if (++terms < 3) return;
      h.fake.updateAs(job.name, { state: 'Cancelled' });
      h.slurm.jobs.delete(job.id);
    };
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    h.fake.setPriority(c.uuid, 0);
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(terms).toBe(3);
    expect(state(h, c.uuid)).toBe('Cancelled');
  });

  it('batches a mass cancellation into one scancel of every job id', async () => {
    const h = await setup();
    simulateCrunchRun(h.fake, h.slurm);
    const cs = h.fake.addContainers(6, { priority: 1, ...SMALL });
    await waitFor(() => cs.every((c) => state(h, c.uuid) === 'Running'), 'all Running');
    // Every runner has seen its job in a snapshot, so each cancels as soon as its update arrives.
    await polls(h.slurm, 2);
    const ids = cs.map((c) => String(h.slurm.byName(c.uuid)[0].id));
    // The burst lands between two poll cycles, so that one cycle reads all of
    // it. A cycle that listed the containers before it but read some full
    // records after it (those whose Running it had not seen yet, when the
    // machine is loaded) hands the runners part of it first: two scancels.
    await new Promise<void>((resolve) =>
      h.d.once('cycle', () => {
        for (const c of cs) h.fake.setPriority(c.uuid, 0);
        resolve();
      }),
    );
    await waitFor(() => cs.every((c) => h.settled.has(c.uuid)), 'runners settled');
    const scancels = h.slurm.callsOf('scancel');
    expect(scancels.map((s) => s.args.filter((a) => a.startsWith('--')))).toEqual([['--batch', '--signal=TERM', '--state=running']]);
    for (const s of scancels) expect(s.args.filter((a) => /^\d+$/.test(a)).sort()).toEqual([...ids].sort());
    for (const c of cs) expect(state(h, c.uuid)).toBe('Cancelled');
  });

  it('cancels the job when the container is finished or requeued while the job is still queued', async () => {
    const h = await setup({ dispatcher: { minRetryPeriod: 60_000 } });
    h.slurm.initialState = 'PENDING';
    const done = h.fake.addContainer({ priority: 1, ...SMALL });
    const requeued = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => h.slurm.has(done.uuid) && h.slurm.has(requeued.uuid), 'both queued');
    h.fake.cancelContainer(done.uuid);
    h.fake.updateAs(requeued.uuid, { state: 'Queued' });
    await waitFor(() => h.settled.has(done.uuid) && h.settled.has(requeued.uuid), 'runners settled');
    expect(h.slurm.jobs.size).toBe(0);
  });
});

describe('SlurmRunner: Dispatcher.kill', () => {
  it('a pending job: scancel, and its Locked container ends Queued with the reason in its log', async () => {
    const h = await setup({ dispatcher: { failureBackoff: { initial: 60_000 } } });
    h.slurm.initialState = 'PENDING';
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => h.slurm.has(c.uuid), 'queued in Slurm');
    await polls(h.slurm, 1);
    await expect(h.d.kill(c.uuid, 'via management API: wrong partition')).resolves.toBe('unlocked');
    expect(state(h, c.uuid)).toBe('Queued');
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.slurm.has(c.uuid)).toBe(false);
    expect(h.slurm.callsOf('scancel').length).toBeGreaterThan(0);
    expect(h.fake.logs.some((l) => l.object_uuid === c.uuid && l.properties?.text === 'via management API: wrong partition')).toBe(true);
    expect(h.lost).toEqual([]);
  });

  it('a running job: the container is cancelled with the reason, the job gets scancel', async () => {
    const h = await setup();
    simulateCrunchRun(h.fake, h.slurm);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    await polls(h.slurm, 1);
    const job = h.slurm.byName(c.uuid)[0];
    await expect(h.d.kill(c.uuid, 'stuck')).resolves.toBe('cancelled');
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(job.signals).toEqual(['TERM']);
    expect(h.fake.container(c.uuid)).toMatchObject({ state: 'Cancelled', runtime_status: { error: 'stuck' } });
  });

  it('keys GatewayAuthSecret by systemRootToken when given', async () => {
    // The job's "crunch-run" prints the secret it got: the job script as sbatch got it, run in sbatch's environment.
    const h = await setup({
      runner: { systemRootToken: 'the-cluster-system-root-token', crunchRunCommand: '/bin/sh', crunchRunArgs: ['-c', 'printf %s "$GatewayAuthSecret"'] },
    });
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => h.slurm.has(c.uuid), 'submitted');
    const [sb] = h.slurm.callsOf('sbatch');
    const env = sb.options.env ?? {};
    // Not in what Slurm stores and shows (the environment, the arguments, the script): only in the job's secrets file.
    expect(env).not.toHaveProperty('GatewayAuthSecret');
    expect(env).not.toHaveProperty('ARVADOS_API_TOKEN');
    const token = h.fake.rootToken.token;
    for (const secret of ['the-cluster-system-root-token', token, token.split('/').pop() ?? token]) {
      expect(JSON.stringify([sb.args, sb.options.input, env])).not.toContain(secret);
    }
    const job = await runWithInput('/bin/sh', ['-s'], { input: sb.options.input, env: { ...env } });
    expect(job.stderr).toBe('');
    expect(job.stdout).toBe(createHmac('sha256', 'the-cluster-system-root-token').update(c.uuid).digest('hex'));
  });
});

describe('SlurmRunner: jobs that vanish', () => {
  it('declares a job lost only after the grace, counting successful squeue runs only, then cancels the Running container', async () => {
    const h = await setup({ runner: { vanishGrace: { misses: 3, ms: 0 } } });
    simulateCrunchRun(h.fake, h.slurm);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');

    // While squeue fails, nothing is known: no miss is counted.
    h.slurm.squeueFails = true;
    h.slurm.finish(c.uuid);
    const failed = (): number => h.slurm.polls().filter((p) => p.result?.code === 1).length;
    await waitFor(() => failed() >= 5, 'failed squeue runs');
    expect(state(h, c.uuid)).toBe('Running');
    expect(h.warnings.filter((w) => /squeue failed/.test(w))).toHaveLength(1);

    const okBefore = h.slurm.polls().filter((p) => p.result?.code === 0).length;
    h.slurm.squeueFails = false;
    await waitFor(() => h.lost.length === 1, 'lost');
    const okAfter = h.slurm.polls().filter((p) => p.result?.code === 0 && p.end !== undefined).length;
    expect(okAfter - okBefore).toBeGreaterThanOrEqual(3);
    expect(h.lost[0]).toMatchObject({ uuid: c.uuid, action: 'cancelled', misses: 3 });

    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    const after = h.fake.container(c.uuid);
    expect(after?.state).toBe('Cancelled');
    expect(String(after?.runtime_status?.error)).toMatch(/left the queue without being cancelled by the dispatcher/);
    await waitFor(() => h.fake.logs.length === 1, 'log record');
    expect(h.fake.logs[0]).toMatchObject({ object_uuid: c.uuid, event_type: 'dispatch' });
    expect(h.slurm.callsOf('scancel')).toHaveLength(0);
  });

  it('honours the time part of the grace', async () => {
    const h = await setup({ runner: { vanishGrace: { misses: 1, ms: 300 } } });
    simulateCrunchRun(h.fake, h.slurm);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    const gone = Date.now();
    h.slurm.finish(c.uuid);
    await waitFor(() => h.lost.length === 1, 'lost');
    expect(Date.now() - gone).toBeGreaterThanOrEqual(300);
    expect(h.lost[0].ms).toBeGreaterThanOrEqual(300);
    expect(h.lost[0].misses).toBeGreaterThan(1);
  });

  it('unlocks a Locked container whose job vanished before crunch-run started', async () => {
    const h = await setup({ dispatcher: { minRetryPeriod: 60_000 } });
    h.slurm.initialState = 'PENDING';
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => h.slurm.has(c.uuid), 'queued');
    h.slurm.finish(c.uuid);
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.lost).toMatchObject([{ uuid: c.uuid, action: 'unlocked', misses: 2 }]);
    expect(state(h, c.uuid)).toBe('Queued');
    await waitFor(() => h.fake.logs.length === 1, 'log record');
    expect(String(h.fake.logs[0].properties.text)).toMatch(/^Slurm job \d+ for container \S+ left the queue without being cancelled by the dispatcher/);
  });

  it('keeps following a job that reappears within the grace', async () => {
    const h = await setup({ runner: { vanishGrace: { misses: 3, ms: 0 } } });
    simulateCrunchRun(h.fake, h.slurm);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    const [job] = h.slurm.byName(c.uuid);
    h.slurm.jobs.delete(job.id);
    await polls(h.slurm, 2);
    h.slurm.jobs.set(job.id, job);
    await polls(h.slurm, 5);
    expect(h.lost).toEqual([]);
    expect(state(h, c.uuid)).toBe('Running');
    finishJob(h, c.uuid);
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(state(h, c.uuid)).toBe('Complete');
  });

  it('does nothing to a container that finished by itself when its job left', async () => {
    const h = await setup({ runner: { vanishGrace: { misses: 1, ms: 0 } } });
    simulateCrunchRun(h.fake, h.slurm);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    finishJob(h, c.uuid);
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.lost).toEqual([]);
    expect(h.fake.logs).toEqual([]);
    expect(state(h, c.uuid)).toBe('Complete');
  });
});

describe('SlurmRunner: priorities', () => {
  it('renices pending jobs into Arvados order, only what changed, and leaves running jobs alone', async () => {
    const h = await setup({ runner: { prioritySpread: 10 } });
    h.slurm.initialState = 'PENDING';
    h.slurm.initialReason = 'Priority';
    const low = h.fake.addContainer({ priority: 1, ...SMALL });
    const mid = h.fake.addContainer({ priority: 500, ...SMALL });
    const high = h.fake.addContainer({ priority: 1000, ...SMALL });
    const order = [high, mid, low].map((c) => c.uuid);
    const slurmPriority = (uuid: string): number => {
      const j = h.slurm.byName(uuid)[0];
      return 4294901760 - j.id - j.nice;
    };
    const inOrder = (uuids: string[]): boolean =>
      uuids.every((u) => h.slurm.has(u)) && uuids.every((u, i) => i === 0 || slurmPriority(uuids[i - 1]) > slurmPriority(u));
    await waitFor(() => inOrder(order) && h.slurm.byName(high.uuid)[0].nice === 0, 'queue in Arvados order');

    // Stable: no more renicing.
    await polls(h.slurm, 2);
    const before = h.slurm.callsOf('scontrol').length;
    await polls(h.slurm, 5);
    expect(h.slurm.callsOf('scontrol')).toHaveLength(before);
    for (const s of h.slurm.callsOf('scontrol')) expect(s.args).toEqual(['update', expect.stringMatching(/^JobId=\d+$/), expect.stringMatching(/^Nice=\d+$/)]);

    // The lowest and the highest swap; a job that runs is left alone.
    h.slurm.byName(mid.uuid)[0].state = 'RUNNING';
    const midId = h.slurm.byName(mid.uuid)[0].id;
    const midCalls = (): number => h.slurm.callsOf('scontrol').filter((s) => s.args[1] === `JobId=${midId}`).length;
    const midBefore = midCalls();
    h.fake.setPriority(low.uuid, 1000);
    h.fake.setPriority(high.uuid, 1);
    await waitFor(() => slurmPriority(low.uuid) > slurmPriority(high.uuid), 'reordered');
    await polls(h.slurm, 3);
    expect(midCalls()).toBe(midBefore);
    expect(h.slurm.byName(low.uuid)[0].nice).toBe(0);
  });

  it('warns once about a job that can never start, then cancels the container with the reason after the grace', async () => {
    const h = await setup({ runner: { neverClearsGrace: 100 } });
    h.slurm.initialState = 'PENDING';
    h.slurm.initialReason = 'PartitionConfig';
    const c = h.fake.addContainer({ priority: 1, runtime_constraints: { ram: 64 * MiB, vcpus: 64 } });
    await waitFor(() => h.warnings.some((w) => /pending with reason PartitionConfig/.test(w)), 'warning');
    expect(h.runner.schedulingStatus(c.uuid)).toBe('Slurm: pending (PartitionConfig)');
    await waitFor(() => state(h, c.uuid) === 'Cancelled', 'cancelled');
    expect(h.warnings.filter((w) => /pending with reason PartitionConfig/.test(w))).toHaveLength(1);
    expect(String(h.fake.container(c.uuid)?.runtime_status?.error)).toMatch(/^Slurm job \d+ cannot start: pending with reason PartitionConfig/);
    await waitFor(() => h.fake.logs.length === 1, 'log record');
    expect(h.fake.logs[0]).toMatchObject({ object_uuid: c.uuid, event_type: 'dispatch' });
    await waitFor(() => h.settled.has(c.uuid), 'runner settled');
    expect(h.slurm.jobs.size).toBe(0);
  });
});

describe('SlurmRunner: malformed records', () => {
  it('survives an update whose priority is missing or not a number: no crash, the job is left alone, the container still runs', async () => {
    const h = await setup();
    h.slurm.initialState = 'PENDING';
    h.slurm.initialReason = 'Priority';
    const rejections: unknown[] = [];
    const onRejection = (err: unknown): void => void rejections.push(err);
    process.on('unhandledRejection', onRejection);
    try {
      const c = h.fake.addContainer({ priority: 1, ...SMALL });
      await waitFor(() => h.slurm.has(c.uuid), 'queued');
      for (const priority of [undefined, 'high', null]) {
        h.fake.forceUpdate(c.uuid, { priority: priority as unknown as number });
        await polls(h.slurm, 3);
      }
      expect(rejections).toEqual([]);
      expect(h.settled.has(c.uuid)).toBe(false);
      expect(h.slurm.callsOf('scancel')).toHaveLength(0);
      // A good priority again: followed as before, and it runs to the end.
      h.fake.forceUpdate(c.uuid, { priority: 1 });
      h.slurm.byName(c.uuid)[0].state = 'RUNNING';
      h.fake.startContainer(c.uuid);
      finishJob(h, c.uuid);
      await waitFor(() => h.settled.has(c.uuid), 'runner settled');
      expect(h.settled.get(c.uuid)).toBeUndefined();
      expect(state(h, c.uuid)).toBe('Complete');
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });
});

describe('SlurmRunner: startup and stop', () => {
  it('hands jobs of this cluster found at startup to the dispatcher: live ones of our token followed, the others (any user\'s) left alone', async () => {
    const fake = await startFake();
    const slurm = new FakeSlurm();
    const me = fake.rootToken.uuid;
    const finished = fake.addContainer({ priority: 1, ...SMALL });
    fake.forceUpdate(finished.uuid, { state: 'Complete' });
    const live = fake.addContainer({ state: 'Running', locked_by_uuid: me, priority: 1, ...SMALL });
    const foreign = 'yyyyy-dz642-000000000000001';
    const missing = 'zzzzz-dz642-000000000000404';
    for (const name of [finished.uuid, live.uuid, foreign, missing, 'not-a-container']) slurm.add(name);
    simulateCrunchRun(fake, slurm);
    const orphans: string[][] = [];
    const h = startDispatcher(fake, slurm);
    h.runner.on('orphans', (names) => orphans.push(names));
    await waitFor(() => h.warnings.some((w) => w.includes(missing)), 'warning about the missing container');
    await polls(slurm, 3);
    expect(orphans).toEqual([expect.arrayContaining([finished.uuid, live.uuid, missing])]);
    expect(orphans[0]).toHaveLength(3);
    // The queue lists every user's jobs: a job of a container our token does not hold is not ours to cancel.
    expect(h.settled.has(finished.uuid)).toBe(false);
    expect(slurm.has(finished.uuid) && slurm.has(live.uuid) && slurm.has(foreign) && slurm.has(missing)).toBe(true);
    expect(slurm.callsOf('scancel')).toHaveLength(0);
    expect(slurm.callsOf('sbatch')).toHaveLength(0);
    expect(state(h, live.uuid)).toBe('Running');
    finishJob(h, live.uuid);
    await waitFor(() => h.settled.has(live.uuid), 'live runner settled');
  });

  it('leaves jobs alone when the dispatcher stops, and a restarted dispatcher follows them without submitting', async () => {
    const fake = await startFake();
    const slurm = new FakeSlurm();
    simulateCrunchRun(fake, slurm);
    const first = startDispatcher(fake, slurm);
    const running = fake.addContainer({ priority: 2, ...SMALL });
    await waitFor(() => state(first, running.uuid) === 'Running', 'Running');
    slurm.initialState = 'PENDING';
    const pending = fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => slurm.has(pending.uuid), 'pending queued');
    await first.d.stop();
    await first.runner.close();
    const callsAtStop = slurm.calls.length;
    expect(first.settled.get(running.uuid)).toBeUndefined();
    expect(first.settled.get(pending.uuid)).toBeUndefined();
    expect(slurm.callsOf('scancel')).toHaveLength(0);
    expect(slurm.has(running.uuid) && slurm.has(pending.uuid)).toBe(true);
    expect(state(first, running.uuid)).toBe('Running');
    expect(state(first, pending.uuid)).toBe('Locked');
    await new Promise((r) => setTimeout(r, 50));
    expect(slurm.calls.length).toBe(callsAtStop);

    const sbatchBefore = slurm.callsOf('sbatch').length;
    const second = startDispatcher(fake, slurm);
    await polls(slurm, 5);
    expect(slurm.callsOf('sbatch')).toHaveLength(sbatchBefore);
    finishJob(second, running.uuid);
    slurm.byName(pending.uuid)[0].state = 'RUNNING';
    fake.startContainer(pending.uuid);
    finishJob(second, pending.uuid);
    await waitFor(() => second.settled.has(running.uuid) && second.settled.has(pending.uuid), 'runners settled');
    expect(slurm.callsOf('sbatch')).toHaveLength(sbatchBefore);
    expect(slurm.callsOf('scancel')).toHaveLength(0);
    expect(fake.runCount(running.uuid)).toBe(1);
  });
});

describe('SlurmRunner options', () => {
  it('fills in the documented defaults', () => {
    const r = new SlurmRunner();
    expect(r.options).toMatchObject({
      crunchRunCommand: 'crunch-run',
      crunchRunArgs: [],
      runtimeEngine: undefined,
      reserveExtraRam: 550 * MiB,
      prioritySpread: 10,
      queueInterval: 10_000,
      queueIntervalMax: 60_000,
      vanishGrace: { misses: 3, ms: 0 },
      submitRetry: { initialDelay: 1_000, maxDelay: 60_000, factor: 2 },
      submitRate: { count: 20, periodMs: 1_000 },
      commandConcurrency: 3,
      neverClearsGrace: 60_000,
      accounting: true,
      commandTimeout: 60_000,
    });
    expect(r.options.args).toEqual(['--job-name=%U', '--mem=%M', '--cpus-per-task=%C', '--tmp=%T', '--partition=%P']);
    expect(r.options.gpuArgs).toEqual(['--gpus=%G']);
    expect(r.adapter.commands).toEqual({ sbatch: 'sbatch', squeue: 'squeue', scancel: 'scancel', scontrol: 'scontrol', sacct: 'sacct' });
  });

  it('rejects bad values and templates at construction, naming the option', () => {
    expect(() => new SlurmRunner({ jobOutputDir: 'relative' })).toThrow(/jobOutputDir/);
    expect(() => new SlurmRunner({ queueInterval: 0 })).toThrow(/queueInterval/);
    expect(() => new SlurmRunner({ vanishGrace: { misses: 0 } })).toThrow(/vanishGrace.misses/);
    expect(() => new SlurmRunner({ environment: { 'A B': 'x' } })).toThrow(/environment/);
    expect(() => new SlurmRunner({ crunchRunArgs: 'x' as unknown as string[] })).toThrow(/crunchRunArgs/);
    expect(() => new SlurmRunner({ submitRetry: { initialDelay: 10, maxDelay: 5 } })).toThrow(/maxDelay/);
    expect(() => new SlurmRunner({ submitRate: { count: 0, periodMs: 1000 } })).toThrow(/submitRate.count/);
    expect(() => new SlurmRunner({ commands: { sbatch: '' } })).toThrow(/commands.sbatch/);
    expect(() => new SlurmRunner({ sbatchArgs: ['--x=%Z'] })).toThrow(/unknown substitution %Z in Slurm argument templates/);
    expect(() => new SlurmRunner({ sbatchGpuArgs: ['--gres=gpu:%Q'] })).toThrow(/unknown substitution %Q/);
  });
});

describe('SlurmRunner: instance types', () => {
  const GiB = 2 ** 30;
  const instanceTypes = [
    { name: 'm.large', vcpus: 4, ram: 16 * GiB, scratch: 100 * GiB, price: 0.4, preemptible: false },
    { name: 'm.small', vcpus: 2, ram: 4 * GiB, scratch: 100 * GiB, price: 0.1, preemptible: false },
  ];

  it('expands %I to the cheapest fitting type in the sbatch arguments', async () => {
    const h = await setup({ runner: { instanceTypes, sbatchArgs: ['--mem=%M', '--constraint=instancetype=%I'] } });
    simulateCrunchRun(h.fake, h.slurm);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    expect(h.slurm.callsOf('sbatch')[0].args).toContain('--constraint=instancetype=m.small');
    expect(h.runner.instanceTypes(h.fake.container(c.uuid)!).map((t) => t.Name)).toEqual(['m.small']);
  });

  it('cancels, before any sbatch, a container no type can hold, naming the types considered', async () => {
    const h = await setup({ runner: { instanceTypes, sbatchArgs: ['--constraint=instancetype=%I'] } });
    simulateCrunchRun(h.fake, h.slurm);
    const big = h.fake.addContainer({ priority: 2, runtime_constraints: { ram: 64 * GiB, vcpus: 1 } });
    const ok = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, big.uuid) === 'Cancelled', 'Cancelled');
    expect(String(h.fake.container(big.uuid)?.runtime_status?.error)).toMatch(/^constraints not satisfiable by any configured instance type/);
    const log = h.fake.logs.filter((l) => l.object_uuid === big.uuid).map((l) => String(l.properties.text)).join('\n');
    expect(log).toMatch(/instance types considered[^]*m\.small[^]*m\.large/);
    await waitFor(() => state(h, ok.uuid) === 'Running', 'the other Running');
    expect(h.slurm.callsOf('sbatch').map((s) => s.args.join(' '))).toEqual([expect.stringContaining('--constraint=instancetype=m.small')]);
    expect(h.slurm.callsOf('sbatch').some((s) => s.args.join(' ').includes(big.uuid))).toBe(false);
  });

  it('expands %I to "" without configured types, keeping the argument, as Arvados does', async () => {
    const h = await setup({ runner: { sbatchArgs: ['--constraint=instancetype=%I'] } });
    simulateCrunchRun(h.fake, h.slurm);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    expect(h.slurm.callsOf('sbatch')[0].args).toContain('--constraint=instancetype=');
  });
});

describe('SlurmRunner: every user\'s jobs', () => {
  it('counts only the jobs of containers it holds in its status and pending reasons', async () => {
    const h = await setup();
    const other = h.fake.addContainer({ priority: 1, ...SMALL, state: 'Locked', locked_by_uuid: 'zzzzz-gj3su-0therd1spatcher' });
    h.slurm.add(other.uuid);
    h.slurm.add('somebody-elses-job', { state: 'PENDING', reason: 'Resources' });
    simulateCrunchRun(h.fake, h.slurm);
    const c = h.fake.addContainer({ priority: 1, ...SMALL });
    await waitFor(() => state(h, c.uuid) === 'Running', 'Running');
    await polls(h.slurm, 2);
    expect(h.runner.ownJobs.map((j) => j.name)).toEqual([c.uuid]);
    expect(h.runner.status.inQueue).toBe(1);
    // Somebody else's job is pending; ours runs: no pending job or reason is ours.
    expect(h.runner.status.pending).toBe(0);
    expect({ ...h.runner.status.pendingReasons }).toEqual({});
    expect(h.slurm.has(other.uuid)).toBe(true);
    expect(h.slurm.callsOf('scancel')).toEqual([]);
  });

  it("reports its own pending jobs' reasons in its status, as the scheduler gives them", async () => {
    const h = await setup();
    h.slurm.initialState = 'PENDING';
    h.slurm.initialReason = 'Resources';
    h.slurm.add('somebody-elses-job', { state: 'PENDING', reason: 'Priority' });
    const cs = [h.fake.addContainer({ priority: 2, ...SMALL }), h.fake.addContainer({ priority: 1, ...SMALL })];
    await waitFor(() => cs.every((c) => h.slurm.has(c.uuid)), 'both submitted');
    await polls(h.slurm, 2);
    expect(h.runner.status.pending).toBe(2);
    expect({ ...h.runner.status.pendingReasons }).toEqual({ Resources: 2 });
  });
});
