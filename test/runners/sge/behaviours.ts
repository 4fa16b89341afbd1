/**
 * The behaviours every batch system must show behind the batch core, as one
 * list of tests parametrised by the system under test: a real Dispatcher on
 * FakeArvados (HTTPS), a BatchRunner with the system's adapter, and the
 * crunch-run simulator (test/fixtures/slurm-crunch-run.mjs) run by the
 * system's jobs on this machine with the credentials the submit command
 * passed on.
 *
 * Used by the Grid Engine (real daemon) and LSF (stub commands) tests; not
 * specific to either.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type Container } from '../../../src/index.js';
import { FakeArvados } from '../../../src/testing/index.js';
import type { BatchRunner } from '../../../src/runners/batch/runner.js';
import type { BatchRunnerOptions } from '../../../src/runners/batch/options.js';
import type { LostJob } from '../../../src/runners/batch/job.js';
import { spawnCommand, type CommandRunner } from '../../../src/runners/batch/commands.js';
import { timestampNanos } from '../../../src/runners/batch/priority.js';
import { waitFor } from '../../helpers/wait.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The crunch-run simulator the jobs run. */
export const CRUNCH_RUN_SIMULATOR = resolve(here, '../../fixtures/slurm-crunch-run.mjs');

/** One of our jobs as the batch system shows it, read directly (not through the adapter). */
export interface SeenJob {
  id: string;
  /** The container UUID. */
  name: string;
  state: 'pending' | 'running' | 'other';
  /** Larger starts first. */
  priority: number;
}

/** How a test wants the system's jobs to behave. */
export interface How {
  pending?: boolean;
  failAfterSubmit?: string;
  stuck?: boolean;
}

/** What a behaviour test needs from one batch system. */
export interface SystemUnderTest {
  /** e.g. `Grid Engine`. */
  readonly name: string;
  /** Why it cannot run here, if it cannot (the tests then say they are skipped). */
  readonly unavailable: string | undefined;
  /** The submit command's name (as the counting command runner sees it). */
  readonly submitCommand: string;
  /** Called before each test (e.g. a fresh job table for stubs). */
  beforeEach?(): void;
  /**
   * A runner for this system. `pending`: its jobs stay pending (held) until
   * cancelled. `failAfterSubmit`: its first submission reaches the queue, but
   * the submit command then fails as if the scheduler had not answered.
   * `stuck`: its jobs stay pending for a reason the adapter says can never
   * clear; {@link stuckReason} matches that reason.
   */
  runner(options: BatchRunnerOptions, how: How): BatchRunner;
  /** Matches the reason given for `stuck` jobs. */
  readonly stuckReason: RegExp;
  /** Our jobs now (jobs named `prefix…`). */
  jobs(prefix: string): Promise<SeenJob[]>;
  /** Removes a job as an operator would, behind the dispatcher's back. */
  remove(jobId: string): Promise<void>;
  /** Submits a job that is not the dispatcher's: a long sleep named `name`. */
  submitSleep(name: string): Promise<void>;
  /** Removes whatever jobs with names starting with `prefix` are left. */
  cleanup(prefix: string): Promise<void>;
}

const MiB = 1024 * 1024;
const INTERVAL = 250;
const WAIT = 60_000;
const TEST_TIMEOUT = 2 * WAIT;

function randomId(n: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join('');
}

/** Defines the behaviour tests for `system`. */
export function describeBehaviours(system: SystemUnderTest): void {
  if (system.unavailable) {
    console.warn(`SKIPPING the ${system.name} behaviour tests: ${system.unavailable}`);
  }
  const describeIt = system.unavailable ? describe.skip : describe;

  describeIt(`${system.name} behind the batch core`, () => {
    // Random cluster ids: every job of this run is named with one of them.
    // The first starts with a digit, as Arvados allows.
    const CLUSTER = `9${randomId(4)}`;
    const FOREIGN = `u${randomId(4)}`;
    let work: string;
    let markers: string;
    let fake: FakeArvados;
    const cleanups: Array<() => Promise<void>> = [];

    beforeAll(() => {
      work = mkdtempSync('/tmp/arvados-dispatch-behaviours-');
      markers = join(work, 'markers');
      mkdirSync(markers);
    });

    afterAll(async () => {
      await system.cleanup(CLUSTER);
      await system.cleanup(FOREIGN);
      rmSync(work, { recursive: true, force: true });
    }, WAIT);

    beforeEach(async () => {
      system.beforeEach?.();
      fake = await new FakeArvados({ clusterId: CLUSTER }).start();
    });

    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
      await fake.stop();
    });

    interface Harness {
      runner: BatchRunner;
      d: Dispatcher;
      calls: Array<{ cmd: string; args: readonly string[] }>;
      settled: Map<string, unknown>;
      lost: LostJob[];
      submitted: Array<[string, string]>;
    }

    function start(how: How = {}, opts: BatchRunnerOptions = {}): Harness {
      const calls: Harness['calls'] = [];
      const counting: CommandRunner = (cmd, args, o) => {
        calls.push({ cmd: basename(cmd), args });
        return spawnCommand(cmd, args, o);
      };
      const runner = system.runner(
        {
          crunchRunCommand: process.execPath,
          crunchRunArgs: [CRUNCH_RUN_SIMULATOR],
          reserveExtraRam: 0,
          queueInterval: INTERVAL,
          queueIntervalMax: INTERVAL,
          vanishGrace: { misses: 3, ms: 1_000 },
          submitRetry: { initialDelay: 100, maxDelay: 2_000 },
          environment: { STUB_MARKER_DIR: markers },
          runner: counting,
          ...opts,
        },
        how,
      );
      const d = new Dispatcher({
        // Insecure, so that the simulator (given the same credentials) accepts the fake's certificate.
        client: fake.client({ insecure: true, retryDelay: 20, maxRetryDelay: 200, timeout: 10_000 }),
        runner,
        pollInterval: INTERVAL,
        handleSignals: false,
        shutdownTimeout: 30_000,
      });
      const h: Harness = { runner, d, calls, settled: new Map(), lost: [], submitted: [] };
      d.on('settled', (uuid, err) => h.settled.set(uuid, err));
      runner.on('lost', (l) => h.lost.push(l));
      runner.on('submitted', (uuid, result) => h.submitted.push([uuid, result]));
      const run = d.run();
      cleanups.push(async () => {
        await d.stop();
        await run.catch(() => undefined);
        await runner.close();
      });
      return h;
    }

    const submits = (h: Harness): number => h.calls.filter((c) => c.cmd === system.submitCommand || c.args.includes(system.submitCommand)).length;
    const stateOf = (uuid: string): string | undefined => fake.container(uuid)?.state;
    const jobsNamed = async (name: string): Promise<SeenJob[]> => (await system.jobs(CLUSTER)).filter((j) => j.name === name);
    const container = (attrs: Partial<Container> & { env?: Record<string, string> }): Container => {
      const { env, ...rest } = attrs;
      return fake.addContainer({ priority: 1, runtime_constraints: { ram: 64 * MiB, vcpus: 1 }, environment: env ?? {}, ...rest });
    };
    const settledOk = async (h: Harness, uuid: string): Promise<void> => {
      await waitFor(() => h.settled.has(uuid), `runner of ${uuid} settled`, WAIT);
      expect(h.settled.get(uuid)).toBeUndefined();
    };
    /** Waits until the runner has seen `n` more queue snapshots. */
    const snapshots = async (h: Harness, n: number): Promise<void> => {
      const seq = h.runner.monitor.latest?.seq ?? 0;
      await waitFor(() => (h.runner.monitor.latest?.seq ?? 0) >= seq + n, `${n} more queue queries`, WAIT);
    };
    /** A condition on the batch system, checked at most every 200 ms (each check runs its commands). */
    const until = (check: () => Promise<boolean>, what: string): Promise<true> => {
      let last = 0;
      return waitFor(async () => {
        if (Date.now() - last < 200) return false;
        last = Date.now();
        return (await check()) || false;
      }, what, WAIT);
    };

    it('runs a container to completion: one submission, credentials in the environment only', async () => {
      const h = start();
      const c = container({ env: { STUB_MODE: 'complete', STUB_RUN_MS: '300' } });
      await settledOk(h, c.uuid);
      expect(stateOf(c.uuid)).toBe('Complete');
      expect(fake.runCount(c.uuid)).toBe(1);
      expect(submits(h)).toBe(1);
      expect(h.lost).toEqual([]);
      expect(await jobsNamed(c.uuid)).toEqual([]);
      const seen = JSON.parse(readFileSync(join(markers, `${c.uuid}.json`), 'utf8')) as { argv: string[]; envKeys: string[] };
      expect(seen.argv).toEqual([CRUNCH_RUN_SIMULATOR, c.uuid]);
      expect(seen.envKeys).toEqual(expect.arrayContaining(['ARVADOS_API_HOST', 'ARVADOS_API_TOKEN', 'ARVADOS_API_HOST_INSECURE', 'GatewayAuthSecret']));
      const token = fake.rootToken.token;
      expect(h.calls.some((call) => call.args.some((a) => a.includes(token)))).toBe(false);
    }, TEST_TIMEOUT);

    it('cancels a running container through priority 0: crunch-run gets SIGTERM and cancels it', async () => {
      const h = start();
      const c = container({ env: { STUB_MODE: 'hang' } });
      await waitFor(() => stateOf(c.uuid) === 'Running', 'Running', WAIT);
      fake.setPriority(c.uuid, 0);
      await settledOk(h, c.uuid);
      expect(stateOf(c.uuid)).toBe('Cancelled');
      expect(fake.transitions.filter((t) => t.uuid === c.uuid).map((t) => t.to)).toEqual(['Locked', 'Running', 'Cancelled']);
      expect(readFileSync(join(markers, `${c.uuid}.signals`), 'utf8')).toMatch(/^SIGTERM\n/);
      expect(await jobsNamed(c.uuid)).toEqual([]);
      expect(h.lost).toEqual([]);
    }, TEST_TIMEOUT);

    it('cancels a pending job through priority 0 and unlocks its container; crunch-run never starts', async () => {
      const h = start({ pending: true });
      const c = container({ env: { STUB_MODE: 'hang' } });
      await until(async () => (await jobsNamed(c.uuid))[0]?.state === 'pending', 'a pending job');
      fake.setPriority(c.uuid, 0);
      await settledOk(h, c.uuid);
      await until(async () => (await jobsNamed(c.uuid)).length === 0, 'the job gone');
      await waitFor(() => stateOf(c.uuid) === 'Queued', 'unlocked', WAIT);
      expect(existsSync(join(markers, `${c.uuid}.json`))).toBe(false);
      expect(h.lost).toEqual([]);
    }, TEST_TIMEOUT);

    it('declares a job removed behind its back lost only after the grace, and cancels its container with a reason', async () => {
      const h = start();
      const c = container({ env: { STUB_MODE: 'mute' } });
      await until(async () => stateOf(c.uuid) === 'Running' && (await jobsNamed(c.uuid))[0]?.state === 'running', 'Running');
      const [job] = await jobsNamed(c.uuid);
      const removedAt = BigInt(Date.now()) * 1_000_000n;
      await system.remove(job.id);
      await waitFor(() => h.lost.length > 0, 'lost', WAIT);
      expect(h.lost[0]).toMatchObject({ uuid: c.uuid, jobId: job.id, action: 'cancelled' });
      // The scheduler's accounting says the job was killed, and that is the reason given.
      expect(h.lost[0].terminal?.kind).toBe('CANCELLED');
      expect(h.lost[0].reason).toContain(h.lost[0].terminal?.detail ?? '(no accounting)');
      expect(h.lost[0].misses).toBeGreaterThanOrEqual(3);
      expect(h.lost[0].ms).toBeGreaterThanOrEqual(1_000);
      await settledOk(h, c.uuid);
      const cancelled = fake.transitions.find((t) => t.uuid === c.uuid && t.to === 'Cancelled');
      expect(timestampNanos(cancelled?.at)! - removedAt).toBeGreaterThanOrEqual(1_000_000_000n);
      expect(String(fake.container(c.uuid)?.runtime_status?.error ?? '')).toContain(h.lost[0].terminal?.detail ?? '(no accounting)');
      await waitFor(() => fake.logs.some((l) => l.object_uuid === c.uuid && l.event_type === 'dispatch'), 'dispatch log', 10_000);
    }, TEST_TIMEOUT);

    it('does not duplicate a submission that failed on our side but reached the queue', async () => {
      const h = start({ failAfterSubmit: 'lost the answer' });
      const c = container({ env: { STUB_MODE: 'release' } });
      await waitFor(() => stateOf(c.uuid) === 'Running', 'Running', WAIT);
      await snapshots(h, 5);
      expect(await jobsNamed(c.uuid)).toHaveLength(1);
      expect(submits(h)).toBe(1);
      writeFileSync(join(markers, `${c.uuid}.release`), '');
      await settledOk(h, c.uuid);
      expect(stateOf(c.uuid)).toBe('Complete');
      expect(fake.runCount(c.uuid)).toBe(1);
    }, TEST_TIMEOUT);

    it('keeps pending jobs in Arvados priority order, and follows a new order', async () => {
      const h = start({ pending: true }, { prioritySpread: 10 });
      const low = container({ priority: 1, env: { STUB_MODE: 'hang' } });
      const mid = container({ priority: 500, env: { STUB_MODE: 'hang' } });
      const high = container({ priority: 1000, env: { STUB_MODE: 'hang' } });
      const inOrder = async (order: Container[]): Promise<boolean> => {
        const q = await system.jobs(CLUSTER);
        const jobs = order.map((c) => q.find((j) => j.name === c.uuid));
        return jobs.every((j) => j?.state === 'pending') && jobs.every((j, i) => i === 0 || (jobs[i - 1]?.priority ?? 0) > (j?.priority ?? 0));
      };
      await until(() => inOrder([high, mid, low]), 'the queue in Arvados order');
      fake.setPriority(low.uuid, 1000);
      fake.setPriority(high.uuid, 1);
      await until(() => inOrder([low, mid, high]), 'the new order');
      for (const c of [low, mid, high]) fake.setPriority(c.uuid, 0);
      for (const c of [low, mid, high]) await settledOk(h, c.uuid);
      expect(submits(h)).toBe(3);
    }, TEST_TIMEOUT);

    it('cancels a container whose job waits for a reason that can never clear, with that reason, after the grace', async () => {
      const h = start({ stuck: true }, { neverClearsGrace: 1_000 });
      const c = container({ env: { STUB_MODE: 'hang' } });
      await settledOk(h, c.uuid);
      await waitFor(() => stateOf(c.uuid) === 'Cancelled', 'Cancelled', WAIT);
      expect(String(fake.container(c.uuid)?.runtime_status?.error ?? '')).toMatch(system.stuckReason);
      await until(async () => (await jobsNamed(c.uuid)).length === 0, 'the job gone');
      expect(existsSync(join(markers, `${c.uuid}.json`))).toBe(false);
      expect(submits(h)).toBe(1);
    }, TEST_TIMEOUT);

    it('leaves jobs in the queue when stopped; a restarted dispatcher adopts them without submitting and cancels orphans', async () => {
      const first = start();
      const a = container({ priority: 2, env: { STUB_MODE: 'release' } });
      const b = container({ priority: 1, env: { STUB_MODE: 'release' } });
      await until(async () => stateOf(a.uuid) === 'Running' && stateOf(b.uuid) === 'Running', 'a and b Running');
      await first.d.stop();
      await first.runner.close();
      expect(await jobsNamed(a.uuid)).toHaveLength(1);
      expect(await jobsNamed(b.uuid)).toHaveLength(1);

      // While no dispatcher runs: an orphan of a finished container, and a job of another cluster.
      const done = container({ env: {} });
      fake.forceUpdate(done.uuid, { state: 'Complete' });
      await system.submitSleep(done.uuid);
      const foreign = `${FOREIGN}-dz642-${randomId(15)}`;
      await system.submitSleep(foreign);
      await until(async () => (await jobsNamed(done.uuid)).length === 1, 'the orphan queued');

      const second = start();
      const orphans: string[][] = [];
      second.runner.on('orphans', (names) => orphans.push(names));
      await waitFor(() => second.settled.has(done.uuid), 'orphan runner settled', WAIT);
      await until(async () => (await jobsNamed(done.uuid)).length === 0, 'the orphan cancelled');
      expect(orphans[0]).toEqual(expect.arrayContaining([a.uuid, b.uuid, done.uuid]));
      expect(orphans[0].every((n) => n.startsWith(`${CLUSTER}-dz642-`))).toBe(true);
      expect((await system.jobs(FOREIGN)).map((j) => j.name)).toEqual([foreign]);

      for (const c of [a, b]) writeFileSync(join(markers, `${c.uuid}.release`), '');
      await settledOk(second, a.uuid);
      await settledOk(second, b.uuid);
      expect(stateOf(a.uuid)).toBe('Complete');
      expect(stateOf(b.uuid)).toBe('Complete');
      expect(submits(second)).toBe(0);
      expect(fake.runCount(a.uuid)).toBe(1);
      expect(fake.runCount(b.uuid)).toBe(1);
    }, TEST_TIMEOUT);
  });
}
