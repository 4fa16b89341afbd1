/**
 * The Slurm runner against a real Slurm (scripts/slurm-up.sh), with a real
 * Dispatcher on FakeArvados (HTTPS) and a stub crunch-run
 * (test/fixtures/slurm-crunch-run.mjs) that the Slurm jobs run on this
 * machine and that talks to the fake API with the credentials sbatch passed
 * on in the job's environment.
 *
 * Skipped, with a warning, where `sinfo` does not answer (no Slurm here).
 * Every job these tests create is named with a random cluster prefix and
 * cancelled in afterAll.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type Container } from '../../../src/index.js';
import { FakeArvados } from '../../../src/testing/index.js';
import {
  DEFAULT_SBATCH_ARGUMENTS,
  SlurmRunner,
  spawnCommand,
  timestampNanos,
  type CommandRunner,
  type LostJob,
  type SlurmRunnerOptions,
} from '../../../src/runners/slurm/index.js';
import { waitFor } from '../../helpers/wait.js';

function slurmUnavailable(): string | undefined {
  const r = spawnSync('sinfo', ['--noheader', '--format=%T'], { encoding: 'utf8', timeout: 15_000 });
  if (r.error) return `sinfo: ${r.error.message}`;
  if (r.status !== 0) return `sinfo exited ${r.status}: ${r.stderr.trim()}`;
  if (!/^(idle|mixed|allocated|completing)/m.test(r.stdout)) return `no usable node (sinfo: ${r.stdout.trim() || 'nothing'})`;
  return undefined;
}

const unavailable = slurmUnavailable();
if (unavailable) {
  console.warn(`SKIPPING the Slurm runner integration tests: ${unavailable}. Run scripts/slurm-up.sh as root to enable them.`);
}
const describeSlurm = unavailable ? describe.skip : describe;

const here = dirname(fileURLToPath(import.meta.url));
const STUB = resolve(here, '../../fixtures/slurm-crunch-run.mjs');
const MiB = 1024 * 1024;
const SMALL = { runtime_constraints: { ram: 64 * MiB, vcpus: 1 } };
const INTERVAL = 200;
const WAIT = 60_000;
const TEST_TIMEOUT = 2 * WAIT;

function randomId(n: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join('');
}

// Random cluster IDs: every job of this run is named with one of them.
const CLUSTER = `t${randomId(4)}`;
const FOREIGN = `u${randomId(4)}`;

interface QueueLine {
  id: string;
  name: string;
  nice: number;
  priority: number;
  state: string;
  reason: string;
}

/** Our jobs in the queue, as squeue shows them now. */
function queue(): QueueLine[] {
  const r = spawnSync('squeue', ['--noheader', '--format=%i|%j|%y|%Q|%T|%r'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`squeue failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [id, name, nice, priority, state, reason] = l.trim().split('|');
      return { id, name, nice: Number(nice), priority: Number(priority), state, reason };
    })
    .filter((j) => j.name.startsWith(CLUSTER) || j.name.startsWith(FOREIGN));
}

const jobsNamed = (name: string): QueueLine[] => queue().filter((j) => j.name === name);

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A job that is not a container's: `sleep` with the given name. */
function submitSleep(name: string): void {
  sh('sbatch', [`--job-name=${name}`, '--mem=16', '--output=/dev/null', '--chdir=/tmp', '--wrap=sleep 600']);
}

describeSlurm('SlurmRunner with real Slurm', () => {
  let work: string;
  let markers: string;
  let outDir: string;
  let fake: FakeArvados;
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(() => {
    work = mkdtempSync('/tmp/arvados-dispatch-slurm-');
    markers = join(work, 'markers');
    outDir = join(work, 'out');
    mkdirSync(markers);
    mkdirSync(outDir);
  });

  afterAll(async () => {
    const ours = queue();
    if (ours.length > 0) spawnSync('scancel', ours.map((j) => j.id));
    await waitFor(() => queue().length === 0, 'our jobs gone', WAIT).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }, WAIT + 10_000);

  beforeEach(async () => {
    fake = await new FakeArvados({ clusterId: CLUSTER }).start();
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await fake.stop();
  });

  interface Harness {
    runner: SlurmRunner;
    d: Dispatcher;
    calls: Array<{ cmd: string; args: readonly string[] }>;
    settled: Map<string, unknown>;
    lost: LostJob[];
    warnings: string[];
  }

  /** A dispatcher and Slurm runner on the fake, counting the Slurm commands it runs. */
  function start(opts: SlurmRunnerOptions & { minRetryPeriod?: number } = {}): Harness {
    const { minRetryPeriod, ...runnerOpts } = opts;
    const calls: Harness['calls'] = [];
    const counting: CommandRunner = (cmd, args, o) => {
      calls.push({ cmd: basename(cmd), args });
      return spawnCommand(cmd, args, o);
    };
    const runner = new SlurmRunner({
      crunchRunCommand: process.execPath,
      crunchRunArgs: [STUB],
      runtimeEngine: 'docker',
      reserveExtraRam: 0,
      queueInterval: INTERVAL,
      vanishGrace: { misses: 3, ms: 1_000 },
      submitRetry: { initialDelay: 100, maxDelay: 2_000 },
      jobOutputDir: outDir,
      environment: { STUB_MARKER_DIR: markers },
      runner: counting,
      ...runnerOpts,
    });
    const d = new Dispatcher({
      // Insecure, so that the stub (given the same credentials) accepts the fake's certificate.
      client: fake.client({ insecure: true, retryDelay: 20, maxRetryDelay: 200, timeout: 10_000 }),
      runContainer: runner.runContainer,
      pollInterval: INTERVAL,
      minRetryPeriod,
      handleSignals: false,
      shutdownTimeout: 30_000,
    });
    runner.attach(d);
    const h: Harness = { runner, d, calls, settled: new Map(), lost: [], warnings: [] };
    d.on('settled', (uuid, err) => h.settled.set(uuid, err));
    runner.on('lost', (l) => h.lost.push(l));
    runner.on('warning', (w) => h.warnings.push(w));
    const run = d.run();
    cleanups.push(async () => {
      await d.stop();
      await run.catch(() => undefined);
      await runner.close();
    });
    return h;
  }

  const sbatches = (h: Harness): number => h.calls.filter((c) => c.cmd === 'sbatch').length;
  const stateOf = (uuid: string): string | undefined => fake.container(uuid)?.state;
  const container = (attrs: Partial<Container> & { env?: Record<string, string> }): Container => {
    const { env, ...rest } = attrs;
    return fake.addContainer({ priority: 1, ...SMALL, environment: env ?? {}, ...rest });
  };
  const settledOk = async (h: Harness, uuid: string): Promise<void> => {
    await waitFor(() => h.settled.has(uuid), `runner of ${uuid} settled`, WAIT);
    expect(h.settled.get(uuid)).toBeUndefined();
  };

  it('runs a container to completion: one sbatch, credentials in the environment, output in the job output dir', async () => {
    const cwdBefore = new Set(readdirSync(process.cwd()));
    const h = start();
    const c = container({ env: { STUB_MODE: 'complete', STUB_RUN_MS: '300' } });
    await settledOk(h, c.uuid);
    expect(stateOf(c.uuid)).toBe('Complete');
    expect(fake.runCount(c.uuid)).toBe(1);
    expect(sbatches(h)).toBe(1);
    expect(h.lost).toEqual([]);
    expect(jobsNamed(c.uuid)).toEqual([]);

    const seen = JSON.parse(readFileSync(join(markers, `${c.uuid}.json`), 'utf8')) as { argv: string[]; envKeys: string[] };
    expect(seen.argv).toEqual([STUB, '--runtime-engine=docker', c.uuid]);
    expect(seen.envKeys).toEqual(expect.arrayContaining(['ARVADOS_API_HOST', 'ARVADOS_API_TOKEN', 'ARVADOS_API_HOST_INSECURE', 'GatewayAuthSecret', 'STUB_MARKER_DIR']));
    const out = readdirSync(outDir).filter((f) => f.includes(c.uuid));
    expect(out).toEqual([expect.stringMatching(new RegExp(`^crunch-run-${c.uuid}-\\d+\\.out$`))]);
    await waitFor(() => /Complete/.test(readFileSync(join(outDir, out[0]), 'utf8')), 'job output written', 10_000);
    expect(readdirSync(process.cwd()).filter((f) => !cwdBefore.has(f) && /^slurm-\d+\.out$/.test(f))).toEqual([]);
  }, TEST_TIMEOUT);

  it('cancels a running container through priority 0: SIGTERM reaches crunch-run, which cancels it', async () => {
    const h = start();
    const c = container({ env: { STUB_MODE: 'hang' } });
    await waitFor(() => stateOf(c.uuid) === 'Running', 'Running', WAIT);
    fake.setPriority(c.uuid, 0);
    await settledOk(h, c.uuid);
    expect(stateOf(c.uuid)).toBe('Cancelled');
    // The stub cancelled it itself, on SIGTERM (not the dispatcher's cleanup).
    expect(fake.transitions.filter((t) => t.uuid === c.uuid).map((t) => t.to)).toEqual(['Locked', 'Running', 'Cancelled']);
    expect(readFileSync(join(markers, `${c.uuid}.signals`), 'utf8')).toMatch(/^SIGTERM\n/);
    expect(h.calls.filter((x) => x.cmd === 'scancel').some((x) => x.args.includes('--signal=TERM') && x.args.includes('--batch'))).toBe(true);
    expect(h.calls.some((x) => x.args.some((a) => /KILL/.test(a)))).toBe(false);
    expect(jobsNamed(c.uuid)).toEqual([]);
    expect(h.lost).toEqual([]);
  }, TEST_TIMEOUT);

  it('declares a job removed behind its back lost only after the grace, and cancels its container', async () => {
    const h = start({ vanishGrace: { misses: 3, ms: 1_000 } });
    const c = container({ env: { STUB_MODE: 'mute' } });
    await waitFor(() => stateOf(c.uuid) === 'Running' && jobsNamed(c.uuid)[0]?.state === 'RUNNING', 'Running', WAIT);
    const removedAt = BigInt(Date.now()) * 1_000_000n;
    sh('scancel', [`--name=${c.uuid}`]);
    await waitFor(() => h.lost.length > 0, 'lost', WAIT);
    expect(h.lost[0]).toMatchObject({ uuid: c.uuid, state: 'Running', action: 'cancelled' });
    expect(h.lost[0].misses).toBeGreaterThanOrEqual(3);
    expect(h.lost[0].ms).toBeGreaterThanOrEqual(1_000);
    await settledOk(h, c.uuid);
    const cancelled = fake.transitions.find((t) => t.uuid === c.uuid && t.to === 'Cancelled');
    expect(timestampNanos(cancelled?.at)! - removedAt).toBeGreaterThanOrEqual(1_000_000_000n);
    expect(cancelled?.by).toBe(fake.rootToken.uuid);
    expect(String(fake.container(c.uuid)?.runtime_status?.error)).toMatch(/left the queue without being cancelled by the dispatcher/);
    await waitFor(() => fake.logs.some((l) => l.object_uuid === c.uuid && l.event_type === 'dispatch'), 'dispatch log', 10_000);
    expect(h.calls.filter((x) => x.cmd === 'scancel')).toEqual([]);
  }, TEST_TIMEOUT);

  it('requeues the container through the library fallback when sbatch fails (bad partition)', async () => {
    const h = start({ sbatchArgs: [...DEFAULT_SBATCH_ARGUMENTS, '--partition=no-such-partition'], minRetryPeriod: 60_000 });
    const c = container({ env: { STUB_MODE: 'complete' } });
    await waitFor(() => h.settled.has(c.uuid), 'runner settled', WAIT);
    expect(String(h.settled.get(c.uuid))).toMatch(/sbatch failed: .*[Ii]nvalid partition/);
    await waitFor(() => stateOf(c.uuid) === 'Queued', 'unlocked', WAIT);
    await waitFor(() => fake.logs.some((l) => l.object_uuid === c.uuid), 'dispatch log', 10_000);
    const rec = fake.logs.find((l) => l.object_uuid === c.uuid);
    expect(rec).toMatchObject({ event_type: 'dispatch' });
    expect(String(rec?.properties.text)).toMatch(/Error running container .*[Ii]nvalid partition/);
    expect(fake.transitions.filter((t) => t.uuid === c.uuid).map((t) => `${t.from}>${t.to}`)).toEqual(['Queued>Locked', 'Locked>Queued']);
    expect(sbatches(h)).toBe(1);
    expect(jobsNamed(c.uuid)).toEqual([]);
  }, TEST_TIMEOUT);

  it('does not duplicate a submission that failed on our side but reached Slurm', async () => {
    const realSbatch = sh('sh', ['-c', 'command -v sbatch']).trim();
    // Named sbatch (in a directory of its own) so that the counting runner counts it.
    mkdirSync(join(work, 'failing'));
    const wrapper = join(work, 'failing', 'sbatch');
    writeFileSync(wrapper, `#!/bin/sh\n${realSbatch} "$@"\necho "sbatch: error: lost the answer after submitting" >&2\nexit 1\n`);
    chmodSync(wrapper, 0o755);
    const h = start({ commands: { sbatch: wrapper } });
    const c = container({ env: { STUB_MODE: 'release' } });
    await waitFor(() => stateOf(c.uuid) === 'Running', 'Running', WAIT);
    // Several snapshots later, still one job and one sbatch.
    const seq = h.runner.monitor.latest?.seq ?? 0;
    await waitFor(() => (h.runner.monitor.latest?.seq ?? 0) >= seq + 5, 'more squeue runs', WAIT);
    expect(jobsNamed(c.uuid)).toHaveLength(1);
    expect(sbatches(h)).toBe(1);
    writeFileSync(join(markers, `${c.uuid}.release`), '');
    await settledOk(h, c.uuid);
    expect(stateOf(c.uuid)).toBe('Complete');
    expect(fake.runCount(c.uuid)).toBe(1);
    expect(readdirSync(outDir).filter((f) => f.includes(c.uuid))).toHaveLength(1);
    expect(fake.logs).toEqual([]);
  }, TEST_TIMEOUT);

  it('renices pending jobs into Arvados priority order', async () => {
    // Jobs that may not start for an hour stay pending, whatever else runs.
    const h = start({ prioritySpread: 10, sbatchArgs: [...DEFAULT_SBATCH_ARGUMENTS, '--begin=now+3600'] });
    const low = container({ priority: 1, env: { STUB_MODE: 'hang' } });
    const mid = container({ priority: 500, env: { STUB_MODE: 'hang' } });
    const high = container({ priority: 1000, env: { STUB_MODE: 'hang' } });
    const order = [high, mid, low].map((c) => c.uuid);
    const inOrder = (): boolean => {
      const q = queue();
      const jobs = order.map((u) => q.find((j) => j.name === u));
      return (
        jobs.every((j) => j?.state === 'PENDING') &&
        jobs[0]?.nice === 0 &&
        jobs.every((j, i) => i === 0 || (jobs[i - 1]?.priority ?? 0) > (j?.priority ?? 0))
      );
    };
    await waitFor(inOrder, 'the queue in Arvados order', WAIT);
    const q = queue();
    const nice = order.map((u) => q.find((j) => j.name === u)?.nice ?? -1);
    expect(nice[0]).toBe(0);
    expect(nice[1]).toBeGreaterThan(0);
    expect(nice[2]).toBeGreaterThan(nice[1]);

    // Settled: later snapshots renice nothing.
    const renices = (): number => h.calls.filter((c) => c.cmd === 'scontrol').length;
    const seq = h.runner.monitor.latest?.seq ?? 0;
    await waitFor(() => (h.runner.monitor.latest?.seq ?? 0) >= seq + 2, 'more squeue runs', WAIT);
    const settledRenices = renices();
    const seq2 = h.runner.monitor.latest?.seq ?? 0;
    await waitFor(() => (h.runner.monitor.latest?.seq ?? 0) >= seq2 + 4, 'more squeue runs', WAIT);
    expect(renices()).toBe(settledRenices);
    expect(inOrder()).toBe(true);

    // A new order: the lowest first, the highest last.
    fake.setPriority(low.uuid, 1000);
    fake.setPriority(high.uuid, 1);
    const reordered = [low, mid, high].map((c) => c.uuid);
    await waitFor(() => {
      const now = queue();
      const p = reordered.map((u) => now.find((j) => j.name === u)?.priority ?? 0);
      return p[0] > p[1] && p[1] > p[2];
    }, 'the new order', WAIT);

    for (const c of [low, mid, high]) fake.setPriority(c.uuid, 0);
    for (const c of [low, mid, high]) await settledOk(h, c.uuid);
    expect(sbatches(h)).toBe(3);
    expect(existsSync(join(markers, `${low.uuid}.json`))).toBe(false);
  }, TEST_TIMEOUT);

  it('warns once about a job Slurm accepted but can never start (more CPUs than the node has)', async () => {
    const h = start();
    const c = container({ runtime_constraints: { ram: 64 * MiB, vcpus: 64 }, env: { STUB_MODE: 'hang' } });
    await waitFor(() => h.warnings.some((w) => w.includes(c.uuid)), 'warning', WAIT);
    expect(jobsNamed(c.uuid)[0]).toMatchObject({ state: 'PENDING', reason: 'PartitionConfig' });
    const seq = h.runner.monitor.latest?.seq ?? 0;
    await waitFor(() => (h.runner.monitor.latest?.seq ?? 0) >= seq + 3, 'more squeue runs', WAIT);
    expect(h.warnings.filter((w) => w.includes(c.uuid))).toEqual([expect.stringMatching(/pending with reason PartitionConfig/)]);
    await waitFor(() => fake.logs.some((l) => l.object_uuid === c.uuid), 'dispatch log', 10_000);
    fake.setPriority(c.uuid, 0);
    await settledOk(h, c.uuid);
    expect(jobsNamed(c.uuid)).toEqual([]);
  }, TEST_TIMEOUT);

  it('leaves jobs in the queue when stopped; a restarted dispatcher follows them without submitting and cancels orphans', async () => {
    const first = start();
    const a = container({ priority: 2, env: { STUB_MODE: 'release' } });
    const b = container({ priority: 1, env: { STUB_MODE: 'release' } });
    await waitFor(() => stateOf(a.uuid) === 'Running' && jobsNamed(b.uuid).length === 1, 'a Running, b queued', WAIT);
    await first.d.stop();
    await first.runner.close();
    expect(first.calls.filter((c) => c.cmd === 'scancel')).toEqual([]);
    expect(jobsNamed(a.uuid)).toHaveLength(1);
    expect(jobsNamed(b.uuid)).toHaveLength(1);
    expect(stateOf(a.uuid)).toBe('Running');
    expect(['Locked', 'Running']).toContain(stateOf(b.uuid));

    // While no dispatcher runs: an orphan of a finished container, and a job of another cluster.
    const done = container({ env: {} });
    fake.forceUpdate(done.uuid, { state: 'Complete' });
    submitSleep(done.uuid);
    const foreign = `${FOREIGN}-dz642-${randomId(15)}`;
    submitSleep(foreign);

    const second = start();
    const orphans: string[][] = [];
    second.runner.on('orphans', (names) => orphans.push(names));
    await waitFor(() => second.settled.has(done.uuid), 'orphan runner settled', WAIT);
    expect(jobsNamed(done.uuid)).toEqual([]);
    expect(orphans).toHaveLength(1);
    expect(orphans[0]).toEqual(expect.arrayContaining([a.uuid, b.uuid, done.uuid]));
    expect(orphans[0].every((n) => n.startsWith(`${CLUSTER}-dz642-`))).toBe(true);
    expect(jobsNamed(foreign)).toHaveLength(1);

    for (const c of [a, b]) writeFileSync(join(markers, `${c.uuid}.release`), '');
    await settledOk(second, a.uuid);
    await settledOk(second, b.uuid);
    expect(stateOf(a.uuid)).toBe('Complete');
    expect(stateOf(b.uuid)).toBe('Complete');
    expect(sbatches(second)).toBe(0);
    expect(fake.runCount(a.uuid)).toBe(1);
    expect(fake.runCount(b.uuid)).toBe(1);
    expect(existsSync(join(markers, `${a.uuid}.signals`))).toBe(false);
    sh('scancel', [`--name=${foreign}`]);
  }, TEST_TIMEOUT);
});
