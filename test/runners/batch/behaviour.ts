/**
 * The behaviour every batch-system adapter must show, as one test list
 * parametrised by an environment: a real Dispatcher on FakeArvados (HTTPS),
 * the adapter's runner against its batch system (a real daemon in the
 * system tier; in the integration tier an in-process stand-in behind the
 * command seam: fake-slurm.ts, fake-lsf.ts and fake-sge.ts on the shared
 * fake-job-table.ts, and PBS's pbs-stub.mjs), and a stub crunch-run
 * (test/fixtures/slurm-crunch-run.mjs) that the jobs run on this machine and
 * that talks to the fake API with the credentials the submit command passed
 * on in the job's environment.
 *
 * `defineBatchBehaviour(env)` defines the tests of issue 10's "For each
 * adapter" list; each adapter's test file calls it with its environment.
 */
import { runWithInput } from '../../helpers/exec.js';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type Container } from '../../../src/index.js';
import { FakeArvados } from '../../../src/testing/index.js';
import type { BatchRunner } from '../../../src/runners/batch/runner.js';
import type { BatchRunnerOptions } from '../../../src/runners/batch/options.js';
import type { LostJob } from '../../../src/runners/batch/job-context.js';
import { spawnCommand, type CommandRunner } from '../../../src/runners/batch/commands.js';
import type { JobState } from '../../../src/runners/batch/adapter.js';
import { waitFor } from '../../helpers/wait.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The stub crunch-run the jobs run. */
export const STUB = resolve(here, '../../fixtures/slurm-crunch-run.mjs');
const MiB = 1024 * 1024;
/** A small container's constraints (a job any node takes). */
export const SMALL = { runtime_constraints: { ram: 64 * MiB, vcpus: 1 } };
/** Milliseconds between queue queries and polls, unless the environment says otherwise. */
export const INTERVAL = 200;
export const WAIT = 60_000;
export const TEST_TIMEOUT = 2 * WAIT;

/** Random lowercase letters and digits. */
export function randomId(n: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join('');
}

/** One of our jobs as the batch system shows it now (read by the test, not by the runner). */
export interface SeenJob {
  id: string;
  name: string;
  state: JobState;
  /** The scheduler's priority (larger starts first). */
  priority: number;
  pendingReason: string;
}

/** What the behaviour list needs of a batch system. */
export interface BatchEnvironment {
  /** For test names: `Slurm`, `LSF`, `Grid Engine`. */
  name: string;
  /** Why the batch system cannot be used here (the tests are skipped, visibly), or undefined. */
  unavailable: string | undefined;
  /**
   * A runner with `options` (the core's) plus, when `failingSubmit` is set,
   * a submit command that submits the job and then fails (the answer lost).
   */
  runner(options: BatchRunnerOptions & { jobOutputDir: string; failingSubmit?: string }): BatchRunner;
  /** The adapter's submit / cancel / renice command names, as counted. */
  commands: { submit: string; cancel: string; renice: string };
  /** Our jobs with this name, now. */
  jobs(name: string): SeenJob[] | Promise<SeenJob[]>;
  /** Removes a job behind the dispatcher's back, as an administrator would. */
  remove(name: string): void | Promise<void>;
  /** Submits a job that is not a container's (it sleeps) under `name`. */
  submitSleep(name: string): void | Promise<void>;
  /** Argument templates (the adapter's defaults plus something) that keep a job pending for an hour. */
  holdArgs: readonly string[];
  /** The real submit command's path (a failing wrapper calls it). */
  realSubmit: string;
  /**
   * Runs the runner's commands instead of spawning them: an in-process fake
   * scheduler behind the command seam (default: spawn them). It is given
   * the failing wrapper's path as the submit command when `failingSubmit` is set.
   */
  commandRunner?: CommandRunner;
  /**
   * Milliseconds between queue queries and between the dispatcher's polls;
   * default {@link INTERVAL}. An in-process stand-in answers at once, so it
   * can be asked more often than a real scheduler.
   */
  interval?: number;
  /** The adapter reads accounting: a completed job's `finished` kind is `COMPLETED`, not `UNKNOWN`. */
  accounting?: boolean;
  /**
   * What another Unix user (`nobody`) sees of job `id` through the
   * scheduler (e.g. `qstat -j`, `scontrol show job -dd`), and the spool
   * directories to search as that user; absent where the batch system is a
   * stand-in.
   */
  asOtherUser?: { show(id: string): string | Promise<string>; spools: readonly string[]; release(id: string): void | Promise<void> };
}

/** The system root token of the behaviour runs: GatewayAuthSecret is keyed by it. */
export const SYSTEM_ROOT_TOKEN = 'behaviour-systemroottoken-0123456789abcdefghijklmnopqrstuvwxyz';

/** A dispatcher and batch runner on the fake, counting the commands the runner runs. */
export interface Harness {
  runner: BatchRunner;
  d: Dispatcher;
  calls: Array<{ cmd: string; args: readonly string[] }>;
  settled: Map<string, unknown>;
  lost: LostJob[];
  warnings: string[];
  finished: Array<[string, string]>;
}

/** Shared state of one behaviour run, for adapter-specific tests in the same file. */
export interface BehaviourContext {
  readonly cluster: string;
  readonly foreign: string;
  fake(): FakeArvados;
  /** When the current test's fake started (ms since the epoch): its tokens are younger. */
  fakeStarted(): number;
  work(): string;
  markers(): string;
  outDir(): string;
  start(opts?: BatchRunnerOptions & { minRetryPeriod?: number; failingSubmit?: boolean }): Harness;
  container(attrs: Partial<Container> & { env?: Record<string, string> }): Container;
  settledOk(h: Harness, uuid: string): Promise<void>;
  stateOf(uuid: string): string | undefined;
}

/**
 * Defines the behaviour tests for `env` inside a `describe` (call it at the
 * top level of a test file); `extra` adds adapter-specific tests with the
 * same context.
 */
export function defineBatchBehaviour(env: BatchEnvironment, extra?: (ctx: BehaviourContext) => void): void {
  defineBatchTests(env, `${env.name} runner: the shared behaviour`, (ctx) => {
    sharedBehaviour(env, ctx);
    extra?.(ctx);
  });
}

/**
 * Defines `tests` inside a `describe` named `title`, with the context of a
 * behaviour run but without the shared list: for an adapter-specific test
 * that needs a file of its own (one that waits minutes on the scheduler,
 * so that other files run meanwhile). Skipped, with a warning, where the
 * batch system is unavailable.
 */
export function defineBatchTests(env: BatchEnvironment, title: string, tests: (ctx: BehaviourContext) => void): void {
  if (env.unavailable) console.warn(`SKIPPING the ${env.name} behaviour tests: ${env.unavailable}`);
  (env.unavailable ? describe.skip : describe)(title, () => tests(behaviourContext(env)));
}

/** Sets up, in the calling `describe`, what every test of a behaviour run shares, and returns it. */
function behaviourContext(env: BatchEnvironment): BehaviourContext {
  // Random cluster IDs: every job of this run is named with one of them.
  const CLUSTER = `t${randomId(4)}`;
  const FOREIGN = `u${randomId(4)}`;
  let work = '';
  let markers = '';
  let outDir = '';
  let fake: FakeArvados;
  let fakeStarted = 0;
  const cleanups: Array<() => Promise<void>> = [];
  /** Containers of the current test: their jobs are removed after it. */
  const created: string[] = [];

  beforeAll(() => {
    work = mkdtempSync('/tmp/arvados-dispatch-batch-');
    markers = join(work, 'markers');
    outDir = join(work, 'out');
    mkdirSync(markers);
    mkdirSync(outDir);
  });

  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  beforeEach(async () => {
    fakeStarted = Date.now();
    fake = await new FakeArvados({ clusterId: CLUSTER }).start();
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    // Every job of this test's containers goes.
    for (const uuid of created.splice(0)) if ((await env.jobs(uuid)).length > 0) await env.remove(uuid);
    await fake.stop();
  });

  function start(opts: BatchRunnerOptions & { minRetryPeriod?: number; failingSubmit?: boolean } = {}): Harness {
    const { minRetryPeriod, failingSubmit, ...runnerOpts } = opts;
    const calls: Harness['calls'] = [];
    const counting: CommandRunner = (cmd, args, o) => {
      calls.push({ cmd: basename(cmd), args });
      return (env.commandRunner ?? spawnCommand)(cmd, args, o);
    };
    let wrapper: string | undefined;
    if (failingSubmit) {
      const dir = mkdtempSync(join(work, 'failing-'));
      // Named like the real command so that the counting runner counts it.
      wrapper = join(dir, basename(env.realSubmit));
      writeFileSync(wrapper, `#!/bin/sh\n${env.realSubmit} "$@"\necho "error: lost the answer after submitting" >&2\nexit 1\n`);
      chmodSync(wrapper, 0o755);
    }
    const runner = env.runner({
      crunchRunCommand: process.execPath,
      crunchRunArgs: [STUB],
      runtimeEngine: 'docker',
      reserveExtraRam: 0,
      queueInterval: env.interval ?? INTERVAL,
      vanishGrace: { misses: 3, ms: 1_000 },
      submitRetry: { initialDelay: 100, maxDelay: 2_000 },
      jobOutputDir: outDir,
      environment: { STUB_MARKER_DIR: markers },
      secretsDir: join(work, 'secrets'),
      systemRootToken: SYSTEM_ROOT_TOKEN,
      runner: counting,
      ...(wrapper ? { failingSubmit: wrapper } : {}),
      ...runnerOpts,
    });
    const d = new Dispatcher({
      // Insecure, so that the stub (given the same credentials) accepts the fake's certificate.
      client: fake.client({ insecure: true, retryDelay: 20, maxRetryDelay: 200, timeout: 10_000 }),
      runner,
      pollInterval: env.interval ?? INTERVAL,
      minRetryPeriod,
      handleSignals: false,
      shutdownTimeout: 30_000,
    });
    const h: Harness = { runner, d, calls, settled: new Map(), lost: [], warnings: [], finished: [] };
    d.on('settled', (uuid, err) => h.settled.set(uuid, err));
    runner.on('lost', (l) => h.lost.push(l));
    runner.on('warning', (w) => h.warnings.push(w));
    runner.on('finished', (uuid, kind) => h.finished.push([uuid, kind]));
    const run = d.run();
    cleanups.push(async () => {
      await d.stop();
      await run.catch(() => undefined);
      await runner.close();
    });
    return h;
  }

  const stateOf = (uuid: string): string | undefined => fake.container(uuid)?.state;
  const container = (attrs: Partial<Container> & { env?: Record<string, string> }): Container => {
    const { env: e, ...rest } = attrs;
    const c = fake.addContainer({ priority: 1, ...SMALL, environment: e ?? {}, ...rest });
    created.push(c.uuid);
    return c;
  };
  const settledOk = async (h: Harness, uuid: string): Promise<void> => {
    await waitFor(() => h.settled.has(uuid), `runner of ${uuid} settled`, WAIT);
    expect(h.settled.get(uuid)).toBeUndefined();
  };
  return {
    cluster: CLUSTER,
    foreign: FOREIGN,
    fake: () => fake,
    fakeStarted: () => fakeStarted,
    work: () => work,
    markers: () => markers,
    outDir: () => outDir,
    start,
    container,
    settledOk,
    stateOf,
  };
}

/** The shared behaviour list (issue 10's "For each adapter"), in the calling `describe`. */
function sharedBehaviour(env: BatchEnvironment, ctx: BehaviourContext): void {
  const { cluster: CLUSTER, foreign: FOREIGN, start, container, settledOk, stateOf } = ctx;
  // The current test's fake and folders, under the names the tests use.
  let fake: FakeArvados;
  let work = '';
  let markers = '';
  beforeEach(() => {
    fake = ctx.fake();
    work = ctx.work();
    markers = ctx.markers();
  });

  const count = (h: Harness, cmd: string): number => h.calls.filter((c) => c.cmd === cmd).length;
  const snapshotsLater = async (h: Harness, n: number): Promise<void> => {
    const seq = h.runner.monitor.latest?.seq ?? 0;
    await waitFor(() => (h.runner.monitor.latest?.seq ?? 0) >= seq + n, `${n} more queue queries`, WAIT);
  };

  it('runs a container to completion: one submission, credentials in the environment only', async () => {
    const h = start();
    const c = container({ env: { STUB_MODE: 'complete', STUB_RUN_MS: '300' } });
    await settledOk(h, c.uuid);
    expect(stateOf(c.uuid)).toBe('Complete');
    expect(fake.runCount(c.uuid)).toBe(1);
    expect(count(h, env.commands.submit)).toBe(1);
    expect(h.lost).toEqual([]);
    expect(await env.jobs(c.uuid)).toEqual([]);
    await waitFor(() => h.finished.some(([u]) => u === c.uuid), 'finished event', WAIT);
    expect(h.finished).toEqual([[c.uuid, env.accounting ? 'COMPLETED' : 'UNKNOWN']]);
    const seen = JSON.parse(readFileSync(join(markers, `${c.uuid}.json`), 'utf8')) as { argv: string[]; envKeys: string[] };
    expect(seen.argv).toEqual([STUB, '--runtime-engine=docker', c.uuid]);
    expect(seen.envKeys).toEqual(expect.arrayContaining(['ARVADOS_API_HOST', 'ARVADOS_API_TOKEN', 'ARVADOS_API_HOST_INSECURE', 'GatewayAuthSecret', 'STUB_MARKER_DIR']));
    // No token on any command line.
    const token = fake.rootToken.token;
    expect(h.calls.some((x) => x.args.some((a) => a.includes(token) || a.includes(token.split('/').pop() ?? token)))).toBe(false);
    // The job's secrets file is gone with the job.
    expect(existsSync(join(work, 'secrets', `${c.uuid}.env`))).toBe(false);
  }, TEST_TIMEOUT);

  const itAsOther = env.asOtherUser && process.getuid?.() === 0 ? it : it.skip;
  itAsOther('shows no part of the token or GatewayAuthSecret to another Unix user, pending or running', async () => {
    const other = env.asOtherUser as NonNullable<BatchEnvironment['asOtherUser']>;
    const secret = (fake.rootToken.token.split('/').pop() ?? '').slice(0, 32);
    const pieces = (s: string): string[] => Array.from({ length: s.length - 9 }, (_, i) => s.slice(i, i + 10));
    const h = start({ args: env.holdArgs });
    const c = container({ env: { STUB_MODE: 'hang' } });
    await waitFor(async () => (await env.jobs(c.uuid))[0]?.state === 'pending', 'pending job', WAIT);
    const file = join(work, 'secrets', `${c.uuid}.env`);
    const gas = /GatewayAuthSecret='([0-9a-f]{64})'/.exec(readFileSync(file, 'utf8'))?.[1] ?? '';
    expect(gas).toHaveLength(64);
    const needles = [...pieces(secret), ...pieces(gas).filter((_, i) => i % 6 === 0)];
    const check = async (): Promise<void> => {
      const id = (await env.jobs(c.uuid))[0].id;
      const shown = await other.show(id);
      expect(shown).toContain(id);
      // Every file `nobody` can read where the scheduler and we keep things,
      // written since the fake made the token (an older file cannot hold
      // it): grepping all of a shared /tmp took ~10 s a check. Two seconds
      // of slack for the coarse clock of file times.
      const dirs = [...other.spools, join(work, 'secrets'), '/tmp'];
      const since = `@${Math.floor(ctx.fakeStarted() / 1000) - 2}`;
      const grep = ['grep', '-lsaF', ...needles.flatMap((n) => ['-e', n]), '--', '{}', '+'];
      const r = await runWithInput('runuser', ['-u', 'nobody', '--', 'find', ...dirs, '-type', 'f', '-newermt', since, '-exec', ...grep]);
      expect(r.stdout.trim()).toBe('');
      expect(needles.filter((n) => shown.includes(n))).toEqual([]);
    };
    await check();
    const cat = await runWithInput('runuser', ['-u', 'nobody', '--', 'cat', file]);
    expect(cat.code).not.toBe(0);
    expect(cat.stdout).toBe('');
    // Running: the script has read and deleted the file.
    await other.release((await env.jobs(c.uuid))[0].id);
    await waitFor(() => stateOf(c.uuid) === 'Running', 'Running', WAIT);
    await check();
    expect(existsSync(file)).toBe(false);
    expect(h.warnings).toEqual([]);
  }, TEST_TIMEOUT);

  it('lets no partition text a container chose stop, pause or hold dispatching', async () => {
    const h = start({ minRetryPeriod: 60_000 });
    const hostile = ['x Permission denied', 'x try again', 'x MaxSubmitJobs'].map((p) => container({ priority: 3, env: { STUB_MODE: 'complete' }, scheduling_parameters: { partitions: [p] } }));
    // Valid as a name, unknown as a partition: the scheduler refuses it, echoing it.
    const echoed = container({ priority: 2, env: { STUB_MODE: 'complete' }, scheduling_parameters: { partitions: ['MaxSubmitJobsPerUser_temporarily'] } });
    for (const c of hostile) await waitFor(() => stateOf(c.uuid) === 'Cancelled', 'Cancelled', WAIT);
    for (const c of hostile) expect(String(fake.container(c.uuid)?.runtime_status?.error)).toMatch(/invalid partition name/);
    const good = container({ priority: 1, env: { STUB_MODE: 'complete', STUB_RUN_MS: '100' } });
    await settledOk(h, good.uuid);
    expect(stateOf(good.uuid)).toBe('Complete');
    // Not held Locked for ever: ran (a stand-in may accept any queue) or was given back.
    await waitFor(() => fake.transitions.some((t) => t.uuid === echoed.uuid && t.from === 'Locked'), 'the echoed one released or run', WAIT);
    for (const c of [...hostile, echoed]) expect(h.settled.get(c.uuid)).toBeUndefined();
    expect(h.runner.status.atQuota).toBe(false);
    expect(h.warnings.filter((w) => /pausing submissions/.test(w))).toEqual([]);
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
    expect(count(h, env.commands.cancel)).toBeGreaterThan(0);
    expect(h.calls.some((x) => x.args.some((a) => /KILL/.test(a)))).toBe(false);
    expect(await env.jobs(c.uuid)).toEqual([]);
    expect(h.lost).toEqual([]);
  }, TEST_TIMEOUT);

  it('cancels a pending job through priority 0, and the container is not run', async () => {
    const h = start({ args: env.holdArgs });
    const c = container({ env: { STUB_MODE: 'hang' } });
    await waitFor(async () => (await env.jobs(c.uuid))[0]?.state === 'pending', 'pending job', WAIT);
    fake.setPriority(c.uuid, 0);
    await settledOk(h, c.uuid);
    expect(await env.jobs(c.uuid)).toEqual([]);
    expect(existsSync(join(markers, `${c.uuid}.json`))).toBe(false);
    expect(h.lost).toEqual([]);
  }, TEST_TIMEOUT);

  it('declares a job removed behind its back lost only after the grace, and cancels its container with the reason', async () => {
    const h = start({ vanishGrace: { misses: 3, ms: 1_000 } });
    const c = container({ env: { STUB_MODE: 'mute' } });
    await waitFor(async () => stateOf(c.uuid) === 'Running' && (await env.jobs(c.uuid))[0]?.state === 'running', 'Running', WAIT);
    const removedAt = Date.now();
    await env.remove(c.uuid);
    await waitFor(() => h.lost.length > 0, 'lost', WAIT);
    expect(h.lost[0]).toMatchObject({ uuid: c.uuid, action: 'cancelled' });
    expect(h.lost[0].misses).toBeGreaterThanOrEqual(3);
    expect(h.lost[0].ms).toBeGreaterThanOrEqual(1_000);
    await settledOk(h, c.uuid);
    const cancelled = fake.transitions.find((t) => t.uuid === c.uuid && t.to === 'Cancelled');
    expect(Date.parse(cancelled?.at ?? '') - removedAt).toBeGreaterThanOrEqual(1_000);
    expect(String(fake.container(c.uuid)?.runtime_status?.error)).toBe(h.lost[0].reason);
    await waitFor(() => fake.logs.some((l) => l.object_uuid === c.uuid && l.event_type === 'dispatch'), 'dispatch log', 10_000);
    expect(count(h, env.commands.cancel)).toBe(0);
  }, TEST_TIMEOUT);

  it('does not duplicate a submission that failed on our side but reached the queue', async () => {
    const h = start({ failingSubmit: true });
    const duplicates: string[] = [];
    h.runner.on('submitted', (uuid, result) => result === 'duplicate' && duplicates.push(uuid));
    const c = container({ env: { STUB_MODE: 'release' } });
    await waitFor(() => stateOf(c.uuid) === 'Running', 'Running', WAIT);
    await snapshotsLater(h, 5);
    expect(await env.jobs(c.uuid)).toHaveLength(1);
    expect(count(h, env.commands.submit)).toBe(1);
    expect(duplicates).toEqual([c.uuid]);
    writeFileSync(join(markers, `${c.uuid}.release`), '');
    await settledOk(h, c.uuid);
    expect(stateOf(c.uuid)).toBe('Complete');
    expect(fake.runCount(c.uuid)).toBe(1);
  }, TEST_TIMEOUT);

  it('renices pending jobs into Arvados priority order, and leaves a settled queue alone', async () => {
    const h = start({ prioritySpread: 10, args: env.holdArgs });
    const low = container({ priority: 1, env: { STUB_MODE: 'hang' } });
    const mid = container({ priority: 500, env: { STUB_MODE: 'hang' } });
    const high = container({ priority: 1000, env: { STUB_MODE: 'hang' } });
    const inOrder = async (uuids: string[]): Promise<boolean> => {
      const jobs = await Promise.all(uuids.map(async (u) => (await env.jobs(u))[0]));
      return jobs.every((j) => j?.state === 'pending') && jobs.every((j, i) => i === 0 || (jobs[i - 1]?.priority ?? 0) > (j?.priority ?? 0));
    };
    const order = [high, mid, low].map((c) => c.uuid);
    await waitFor(() => inOrder(order), 'the queue in Arvados order', WAIT);
    // Renicing converges: once a few queries in a row needed no change,
    // later ones need none either (no flapping).
    const renices = (): number => h.calls.filter((c) => c.cmd === env.commands.renice && !c.args.includes('show')).length;
    const deadline = Date.now() + WAIT;
    for (let before = -1; before !== renices(); ) {
      expect(Date.now()).toBeLessThan(deadline);
      before = renices();
      await snapshotsLater(h, 3);
    }
    const settled = renices();
    expect(settled).toBeGreaterThan(0);
    await snapshotsLater(h, 4);
    expect(renices()).toBe(settled);
    expect(await inOrder(order)).toBe(true);

    fake.setPriority(low.uuid, 1000);
    fake.setPriority(high.uuid, 1);
    await waitFor(() => inOrder([low, mid, high].map((c) => c.uuid)), 'the new order', WAIT);

    for (const c of [low, mid, high]) fake.setPriority(c.uuid, 0);
    for (const c of [low, mid, high]) await settledOk(h, c.uuid);
    expect(count(h, env.commands.submit)).toBe(3);
    expect(existsSync(join(markers, `${low.uuid}.json`))).toBe(false);
  }, TEST_TIMEOUT);

  it('leaves jobs in the queue when stopped; a restarted dispatcher adopts them without submitting, and leaves jobs of containers it does not hold alone', async () => {
    const first = start();
    const a = container({ priority: 2, env: { STUB_MODE: 'release' } });
    const b = container({ priority: 1, env: { STUB_MODE: 'release' } });
    await waitFor(async () => stateOf(a.uuid) === 'Running' && (await env.jobs(b.uuid)).length === 1, 'a Running, b queued', WAIT);
    await first.d.stop();
    expect(count(first, env.commands.cancel)).toBe(0);
    expect(await env.jobs(a.uuid)).toHaveLength(1);
    expect(await env.jobs(b.uuid)).toHaveLength(1);
    expect(stateOf(a.uuid)).toBe('Running');

    // While no dispatcher runs: an orphan of a finished container, and a job of another cluster.
    const done = container({ env: {} });
    fake.forceUpdate(done.uuid, { state: 'Complete' });
    await env.submitSleep(done.uuid);
    const foreign = `${FOREIGN}-dz642-${randomId(15)}`;
    await env.submitSleep(foreign);
    try {
      const second = start();
      const orphans: string[][] = [];
      second.runner.on('orphans', (names) => orphans.push(names));
      await waitFor(() => orphans.length === 1, 'orphans found', WAIT);
      expect(orphans[0]).toEqual(expect.arrayContaining([a.uuid, b.uuid, done.uuid]));
      expect(orphans[0].every((n) => n.startsWith(`${CLUSTER}-dz642-`))).toBe(true);
      expect(await env.jobs(foreign)).toHaveLength(1);

      for (const c of [a, b]) writeFileSync(join(markers, `${c.uuid}.release`), '');
      await settledOk(second, a.uuid);
      await settledOk(second, b.uuid);
      expect(stateOf(a.uuid)).toBe('Complete');
      expect(stateOf(b.uuid)).toBe('Complete');
      expect(count(second, env.commands.submit)).toBe(0);
      expect(fake.runCount(a.uuid)).toBe(1);
      expect(fake.runCount(b.uuid)).toBe(1);
      // The queue lists every user's jobs: one of a container our token does not hold is never touched.
      expect(second.settled.has(done.uuid)).toBe(false);
      expect(await env.jobs(done.uuid)).toHaveLength(1);
    } finally {
      await env.remove(foreign);
      await env.remove(done.uuid);
    }
  }, TEST_TIMEOUT);
}
