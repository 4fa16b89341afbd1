// A busy cluster as an operator sees it: the status line (human and --json)
// shows what holds containers back (the cap, the API's back-pressure, the
// scheduler's pending reasons and paused submissions), and API overload
// answers pause locking without unlocking or cancelling anything, visible
// in the status line and the management API's metrics.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Dispatcher } from '../../src/index.js';
import { FakeArvados } from '../../src/testing/index.js';
import { Output } from '../../src/cli/output.js';
import { Reporter, pendingReasons, statusLine, type StatusCounts } from '../../src/cli/report.js';
import { DISPATCHER_OPTIONS, parseCommandLine } from '../../src/cli/args.js';
import { BATCH_MAX_JOBS, dispatcherSettings } from '../../src/cli/dispatching.js';
import { built, spawnCli, type Cli } from '../helpers/cli.js';
import { parseExposition } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait.js';

const BIN = fileURLToPath(new URL('../runners/lsf/bin', import.meta.url));
const STUB = fileURLToPath(new URL('../fixtures/slurm-crunch-run.mjs', import.meta.url));
const MiB = 2 ** 20;
const BASE: StatusCounts = { queued: 3, running: 2, done: 5, complete: 4, cancelled: 1 };

describe('the status line on a busy cluster', () => {
  it('adds the cap, the API back-pressure, a stop and the scheduler only when they apply', () => {
    expect(statusLine({ ...BASE, atQuota: false, scheduler: 'Slurm', pending: 0, pendingReasons: [], submissionsPaused: false })).toBe(
      'queued 3, running 2, done 5 (complete 4, cancelled 1)',
    );
    const now = 1_000_000;
    expect(
      statusLine(
        {
          ...BASE,
          atQuota: true,
          lockingPausedUntil: now + 7_200,
          lockConcurrency: [2, 8],
          scheduler: 'Slurm',
          pending: 6,
          pendingReasons: [
            ['Priority', 4],
            ['Resources', 2],
          ],
          submissionsPaused: true,
        },
        now,
      ),
    ).toBe(
      'queued 3, running 2, done 5 (complete 4, cancelled 1); at quota (max-jobs or runner capacity reached); ' +
        'API overloaded: locking paused for 8 s, lock concurrency 2 of 8; Slurm: 6 pending (Priority 4, Resources 2), submissions paused (at quota)',
    );
    expect(statusLine({ ...BASE, lockingStopped: 'configuration error: sbatch: invalid partition' })).toBe(
      'queued 3, running 2, done 5 (complete 4, cancelled 1); locking stopped (configuration error: sbatch: invalid partition): restart once fixed',
    );
  });

  it('counts pending reasons most frequent first, with at most four names, cut and on one line', () => {
    // What a batch runner's status carries: pending jobs counted by their reason.
    const tally = (js: Array<{ state: string; pendingReason: string }>): Record<string, number> => {
      const by = Object.create(null) as Record<string, number>;
      for (const j of js) if (j.state === 'pending') by[j.pendingReason] = (by[j.pendingReason] ?? 0) + 1;
      return by;
    };
    const jobs = [
      ...Array.from({ length: 50 }, (_, i) => ({ state: 'pending', pendingReason: `Reason${i % 10}` })),
      ...Array.from({ length: 7 }, () => ({ state: 'pending', pendingReason: 'Priority' })),
      { state: 'pending', pendingReason: `evil\nline ${'x'.repeat(200)}` },
      { state: 'running', pendingReason: '' },
    ];
    const r = pendingReasons(tally(jobs));
    expect(r).toHaveLength(5);
    expect(r[0]).toEqual(['Priority', 7]);
    expect(r[4][0]).toBe('other');
    expect(r.reduce((n, [, k]) => n + k, 0)).toBe(58);
    expect(pendingReasons(tally([{ state: 'pending', pendingReason: `evil\nline ${'x'.repeat(200)}` }]))[0][0]).toMatch(/^evil line x+…$/);
    expect(pendingReasons(tally([{ state: 'pending', pendingReason: '' }]))).toEqual([['no reason given', 1]]);
    // Scheduler text naming an object key is just a reason.
    expect(pendingReasons(tally([{ state: 'pending', pendingReason: '__proto__' }, { state: 'pending', pendingReason: 'constructor' }]))).toEqual([['__proto__', 1], ['constructor', 1]]);
  });
});

describe('busy-cluster defaults', () => {
  const settings = (argv: string[], command: string): ReturnType<typeof dispatcherSettings> =>
    dispatcherSettings(parseCommandLine(argv, DISPATCHER_OPTIONS, command, {}));

  it('caps batch-system commands at 1000 containers in flight unless --max-jobs says otherwise; local has its resources as the cap', () => {
    expect(BATCH_MAX_JOBS).toBe(1000);
    for (const command of ['slurm', 'lsf', 'sge']) expect(settings([], command).maxJobs).toBe(1000);
    expect(settings(['--max-jobs', '5000'], 'slurm').maxJobs).toBe(5000);
    expect(settings([], 'local').maxJobs).toBeUndefined();
    expect(settings([], 'slurm').lockConcurrency).toBe(8);
  });
});

describe('API back-pressure in the status line', () => {
  let fake: FakeArvados | undefined;
  let d: Dispatcher | undefined;
  afterEach(async () => {
    await d?.stop();
    await fake?.stop();
  });

  it('shows 503s without Retry-After and a 429 with it as paused locking and lowered concurrency, unlocks nothing, then recovers', async () => {
    fake = await new FakeArvados().start();
    const running = fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid, priority: 100 });
    // One container, so each lock attempt meets one answer in turn.
    const queued = fake.addContainer();
    fake.override('containers.lock', { status: 503, body: { errors: ['overloaded'] }, times: 2 });
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _e, cb) => void (lines.push(...chunk.toString().trim().split('\n')), cb()) });
    const out = new Output({ json: true, stdout: sink, stderr: sink });
    const overloads: Array<{ ms: number; concurrency: number }> = [];
    d = new Dispatcher({
      client: fake.client({ retries: 0 }),
      pollInterval: 50,
      lockConcurrency: 8,
      handleSignals: false,
      runContainer: async (_d, _c, updates) => {
        for await (const c of updates) void c;
      },
    });
    const reporter = new Reporter(out, d);
    d.on('api-overloaded', (until, concurrency) => {
      overloads.push({ ms: until - Date.now(), concurrency });
      reporter.printStatus();
    });
    void d.run();
    await waitFor(() => overloads.length === 2, 'two 503s');
    fake.override('containers.lock', { status: 429, body: { errors: ['slow down'] }, headers: { 'Retry-After': '1' }, times: 1 });
    await waitFor(() => overloads.length === 3, 'a 429');
    await waitFor(() => fake!.container(queued.uuid)?.state === 'Locked', 'locked after the pauses', 30_000);
    // Every lock that succeeds raises the concurrency by one again (once its answer is read).
    await waitFor(() => d!.status.lockConcurrency === 2, 'the concurrency raised by the lock', 10_000);

    // Halved per overload; the backoff doubles without Retry-After (1 s, then 2 s); Retry-After: 1 is 1 s.
    expect(overloads.map((o) => o.concurrency)).toEqual([4, 2, 1]);
    expect(overloads[0].ms).toBeLessThanOrEqual(1_000);
    expect(overloads[1].ms).toBeGreaterThan(1_000);
    expect(overloads[2].ms).toBeLessThanOrEqual(1_000);
    const status = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.event === 'status');
    expect(status).toHaveLength(3);
    for (const s of status) {
      expect(s.api).toMatchObject({ overloaded: true, max_lock_concurrency: 8 });
      expect((s.api as { locking_paused_until: string }).locking_paused_until).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(s.msg).toMatch(/API overloaded: locking paused for \d+ s, lock concurrency [124] of 8/);
    }
    // Recovered, and nothing was let go because of the overload.
    reporter.printStatus();
    const last = JSON.parse(lines[lines.length - 1]) as { api: Record<string, unknown>; msg: string };
    expect(fake.count('containers.unlock')).toBe(0);
    expect(fake.container(running.uuid)?.state).toBe('Running');
    expect(last.api).toMatchObject({ locking_paused_until: null, lock_concurrency: 2 });
    expect(last.msg).not.toContain('locking paused');
  }, 60_000);
});

(built ? describe : describe.skip)('arvados-dispatch lsf on a busy cluster (process, stub LSF, management listener)', () => {
  const PATH = `${BIN}:${process.env.PATH ?? ''}`;
  const MGMT = 'busy-cluster-management-token';
  let fake: FakeArvados;
  let table: string;
  let cli: Cli | undefined;
  beforeAll(async () => {
    fake = await new FakeArvados().start();
    table = mkdtempSync('/tmp/arvados-dispatch-busy-');
  });
  afterAll(async () => {
    if (cli && cli.child.exitCode === null) cli.child.kill('SIGKILL');
    const env = { ...process.env, LSF_STUB_DIR: table };
    const exec = promisify(execFile);
    const { stdout } = await exec(join(BIN, 'bjobs'), ['-o', 'jobid', '-json'], { encoding: 'utf8', env }).catch(() => ({ stdout: '' }));
    const left = JSON.parse(stdout || '{"RECORDS":[]}') as { RECORDS: Array<{ JOBID: string }> };
    if (left.RECORDS.length) await exec(join(BIN, 'bkill'), left.RECORDS.map((r) => r.JOBID), { env }).catch(() => undefined);
    await fake.stop();
    rmSync(table, { recursive: true, force: true });
  });

  it('status and metrics show the 503 pause, at quota and the pending reasons; nothing is unlocked or cancelled', async () => {
    // Jobs stay pending in the stub LSF, with this reason.
    writeFileSync(join(table, 'hold'), '');
    writeFileSync(join(table, 'pend-reason'), 'Job slot limit reached;');
    const tokenFile = join(table, 'management-token');
    writeFileSync(tokenFile, MGMT, { mode: 0o600 });
    const cs = fake.addContainers(5, (i) => ({ priority: 10 + i, runtime_constraints: { ram: 64 * MiB, vcpus: 1 } }));
    fake.override('containers.lock', { status: 503, body: { errors: ['overloaded'] }, headers: { 'Retry-After': '2' }, times: 2 });
    cli = spawnCli(
      [
        'lsf',
        '--json',
        // No sudo: jobs of another user need a dispatcher running as root (it chowns their secrets files).
        '--bsub-sudo-user', '',
        '--max-jobs', '2',
        '--poll-interval', '100ms',
        '--bjobs-interval', '100ms',
        '--status-interval', '100ms',
        '--listen', '127.0.0.1:0',
        '--management-token-file', tokenFile,
        '--crunch-run-command', process.execPath,
        `--crunch-run-arg=${STUB}`,
        // A user that exists here (Arvados' default, crunch, may not).
        '--bsub-sudo-user', 'nobody',
      ],
      { HOME: table, PATH, LSF_STUB_DIR: table, ...fake.env() },
    );
    const c = cli;
    const records = (): Array<Record<string, unknown>> =>
      c
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const statuses = (): Array<Record<string, unknown>> => records().filter((r) => r.event === 'status');
    const address = (await waitFor(() => records().find((r) => r.event === 'listening'), 'the listening line')).address as string;
    const metrics = async (): Promise<ReturnType<typeof parseExposition>> => {
      const res = await fetch(`http://${address}/metrics`, { headers: { Authorization: `Bearer ${MGMT}` } });
      return parseExposition(await res.text());
    };

    // 1. The API answers 503 with Retry-After: 2: locking pauses, shown as such.
    const paused = await waitFor(() => statuses().find((s) => (s.api as { overloaded: boolean }).overloaded), 'a status line with the API overloaded', 30_000);
    expect(paused.msg).toMatch(/API overloaded: locking paused for [12] s, lock concurrency \d of 8/);
    expect((await metrics()).value('arvados_dispatch_last_503_time')! * 1000).toBeGreaterThan(Date.now() - 60_000);
    const entries = async (): Promise<Array<{ container: { uuid: string }; scheduling_status: string }>> => {
      const res = await fetch(`http://${address}/arvados/v1/dispatch/containers`, { headers: { Authorization: `Bearer ${MGMT}` } });
      return ((await res.json()) as { items: Array<{ container: { uuid: string }; scheduling_status: string }> }).items;
    };
    // The management API says why the queued ones wait (Workbench shows it).
    await waitFor(async () => (await entries()).some((e) => e.scheduling_status === 'waiting: locking paused: the API is overloaded'), 'the pause in scheduling_status', 30_000);

    // 2. Then two containers are locked and submitted (max-jobs 2); their jobs pend; the rest wait unlocked.
    const busy = await waitFor(
      () => statuses().find((s) => s.at_quota === true && (s.scheduler as { pending: number }).pending === 2),
      'a status line at quota with two pending jobs',
      60_000,
    );
    expect(busy.scheduler).toEqual({ name: 'LSF', pending: 2, pending_reasons: { 'Job slot limit reached': 2 }, submissions_paused: false });
    expect(busy.msg).toContain('at quota (max-jobs or runner capacity reached)');
    expect(busy.msg).toContain('LSF: 2 pending (Job slot limit reached 2)');
    const m = await metrics();
    expect(m.value('arvados_dispatch_at_quota')).toBe(1);
    // Highest priority first: the two locked are the last two created. Each
    // container's runner reads the snapshot a moment after the status line.
    const pendingStatus = 'LSF: pending (Job slot limit reached)';
    const byUuid = await waitFor(async () => {
      const m = new Map((await entries()).map((e) => [e.container.uuid, e.scheduling_status]));
      return m.get(cs[4].uuid) === pendingStatus && m.get(cs[3].uuid) === pendingStatus && m;
    }, 'the two locked containers pending in scheduling_status', 30_000);
    for (const q of cs.slice(0, 3)) expect(byUuid.get(q.uuid)).toBe('waiting: at max-jobs (2)');

    // Nothing was unlocked or cancelled because of the overload or the cap.
    expect(fake.count('containers.unlock')).toBe(0);
    expect(cs.map((x) => fake.container(x.uuid)?.state).sort()).toEqual(['Locked', 'Locked', 'Queued', 'Queued', 'Queued']);
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
    expect(c.stdout() + c.stderr()).not.toContain(fake.rootToken.token);
  }, 120_000);
});
