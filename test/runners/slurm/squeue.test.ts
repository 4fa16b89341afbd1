import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import type { CommandRunner, RunOptions, RunResult } from '../../../src/runners/slurm/commands.js';
import type { SqueueSnapshot } from '../../../src/runners/slurm/squeue.js';
import {
  SQUEUE_FORMAT,
  SqueueMonitor,
  SqueueMonitorStoppedError,
  parseSqueue,
} from '../../../src/runners/slurm/squeue.js';

const U0 = 'zzzzz-dz642-queuedcontainer';
const U1 = 'zzzzz-dz642-000000000000001';

describe('parseSqueue', () => {
  it('parses name, nice, priority, state and a reason with spaces', () => {
    const jobs = parseSqueue(
      `${U0} 10000 4294901659 PENDING None\n` +
        `${U1} -5 12 PENDING ReqNodeNotAvail, UnavailableNodes:compute[1-2]\n`,
    );
    expect([...jobs.keys()]).toEqual([U0, U1]);
    expect(jobs.get(U0)).toEqual({ name: U0, nice: 10000, priority: 4294901659, state: 'PENDING', reason: 'None' });
    expect(jobs.get(U1)).toEqual({
      name: U1,
      nice: -5,
      priority: 12,
      state: 'PENDING',
      reason: 'ReqNodeNotAvail, UnavailableNodes:compute[1-2]',
    });
  });

  it('ignores jobs that are not containers, including names with spaces', () => {
    const bad: string[] = [];
    const jobs = parseSqueue(
      'a name with spaces 0 4294901757 PENDING Resources\n' +
        'zzzzz-j7d0g-000000000000000 0 1 RUNNING None\n' +
        'slurm-job 0 1 RUNNING None\n' +
        '\n   \n' +
        `${U0} 0 4294901757 RUNNING None\n`,
      (line) => bad.push(line),
    );
    expect([...jobs.keys()]).toEqual([U0]);
    expect(bad).toEqual([]);
  });

  it('reports malformed lines of containers and skips them', () => {
    const bad: string[] = [];
    const jobs = parseSqueue(`${U0} x 1 RUNNING None\n${U1} 0\n${U1} 0 1 running None\n`, (l) => bad.push(l));
    expect(jobs.size).toBe(0);
    expect(bad).toEqual([`${U0} x 1 RUNNING None`, `${U1} 0`, `${U1} 0 1 running None`]);
  });

  it('accepts an empty reason and CRLF line ends', () => {
    expect(parseSqueue(`${U0} 0 1 COMPLETING\r\n`).get(U0)).toMatchObject({ state: 'COMPLETING', reason: '' });
  });
});

interface Call {
  args: readonly string[];
  options: RunOptions;
  resolve: (r: Partial<RunResult>) => void;
  reject: (e: unknown) => void;
}

/** A squeue whose every run waits until the test answers it. */
class FakeSqueue {
  readonly calls: Call[] = [];
  #waiting: Array<() => void> = [];

  readonly runner: CommandRunner = (_cmd, args, options = {}) =>
    new Promise<RunResult>((resolve, reject) => {
      options.signal?.addEventListener('abort', () => reject(options.signal?.reason), { once: true });
      this.calls.push({
        args,
        options,
        resolve: (r) => resolve({ code: 0, signal: null, stdout: '', stderr: '', ...r }),
        reject,
      });
      for (const wake of this.#waiting.splice(0)) wake();
    });

  /** Waits for the n-th call (1-based) to arrive. */
  async call(n: number): Promise<Call> {
    while (this.calls.length < n) await new Promise<void>((r) => this.#waiting.push(r));
    return this.calls[n - 1];
  }
}

function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  // Let pending callbacks run first.
  return new Promise((r) => setImmediate(() => r(done)));
}

const monitors: SqueueMonitor[] = [];
function monitor(fake: FakeSqueue, intervalMs = 5): SqueueMonitor {
  const m = new SqueueMonitor({ intervalMs, runner: fake.runner, user: 'crunch' });
  monitors.push(m);
  return m;
}
afterEach(async () => {
  await Promise.all(monitors.splice(0).map((m) => m.stop()));
});

describe('SqueueMonitor', () => {
  it('runs squeue for one user with the parseable format', () => {
    const m = new SqueueMonitor({ intervalMs: 1000, user: 'crunch' });
    expect(m.args).toEqual(['--user=crunch', '--noheader', `--format=${SQUEUE_FORMAT}`]);
    expect(new SqueueMonitor({ intervalMs: 1000 }).args[0]).toBe(`--user=${userInfo().username}`);
    expect(new SqueueMonitor({ intervalMs: 1000, user: 'x', allPartitions: true }).args.slice(0, 2)).toEqual([
      '--all',
      '--user=x',
    ]);
    expect(() => new SqueueMonitor({ intervalMs: 0 })).toThrow(RangeError);
  });

  it('polls at once on start and resolves waiters with the snapshot', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake);
    const waiting = m.nextSnapshot();
    m.start();
    const first = await fake.call(1);
    expect(first.args).toEqual(m.args);
    first.resolve({ stdout: `${U0} 10000 100 PENDING Resources\n` });
    const snap = await waiting;
    expect(snap.seq).toBe(1);
    expect(snap.jobs.get(U0)?.state).toBe('PENDING');
    expect(m.latest).toBe(snap);
    expect(snap.finishedAt).toBeGreaterThanOrEqual(snap.startedAt);
  });

  it('gives a waiter only a snapshot from a poll started after it asked', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake);
    m.start();
    const first = await fake.call(1);
    // Asked while poll 1 runs: poll 1 may have missed what the caller just did.
    const waiting = m.nextSnapshot();
    first.resolve({ stdout: '' });
    await new Promise((r) => setImmediate(r));
    expect(await settled(waiting)).toBe(false);
    expect(m.latest?.seq).toBe(1);
    (await fake.call(2)).resolve({ stdout: `${U0} 0 1 RUNNING None\n` });
    const snap = await waiting;
    expect(snap.seq).toBe(2);
    expect(snap.jobs.has(U0)).toBe(true);
  });

  it('treats a failed squeue as unknown: no snapshot, waiters keep waiting', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake);
    const errors: Error[] = [];
    const snapshots: SqueueSnapshot[] = [];
    m.on('pollError', (e) => errors.push(e));
    m.on('snapshot', (s) => snapshots.push(s));
    m.start();
    (await fake.call(1)).resolve({ stdout: `${U0} 0 1 RUNNING None\n` });
    const waiting = m.hasJob(U0);
    (await fake.call(2)).resolve({
      code: 1,
      stderr: 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n',
    });
    (await fake.call(3)).reject(Object.assign(new Error('spawn squeue ENOENT'), { code: 'ENOENT' }));
    await fake.call(4);
    expect(await settled(waiting)).toBe(false);
    expect(m.latest?.seq).toBe(1);
    expect(errors.map((e) => e.message)).toEqual([
      'squeue failed: slurm_load_jobs error: Unable to contact slurm controller (connect failure)',
      'spawn squeue ENOENT',
    ]);
    fake.calls[3].resolve({ stdout: `${U0} 0 1 RUNNING None\n` });
    expect(await waiting).toBe(true);
    expect(snapshots.map((s) => s.seq)).toEqual([1, 4]);
  });

  it('survives a runner that throws and a listener that throws', async () => {
    let calls = 0;
    const m = new SqueueMonitor({
      intervalMs: 5,
      user: 'u',
      runner: async () => {
        calls++;
        if (calls === 1) throw new Error('boom');
        return { code: 0, signal: null, stdout: '', stderr: '' };
      },
    });
    monitors.push(m);
    const errors: string[] = [];
    m.on('pollError', (e) => errors.push(e.message));
    m.on('snapshot', () => {
      throw new Error('bad listener');
    });
    m.start();
    await m.nextSnapshot();
    const snap = await m.nextSnapshot();
    expect(snap.seq).toBeGreaterThanOrEqual(3);
    expect(errors).toEqual(['boom']);
  });

  it('waits for the first poll when asked before start', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake);
    const waiting = m.nextSnapshot();
    await new Promise((r) => setTimeout(r, 20));
    expect(fake.calls).toHaveLength(0);
    m.start();
    (await fake.call(1)).resolve({});
    expect((await waiting).seq).toBe(1);
  });

  it('rejects a waiter whose signal aborts, and forgets it', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake);
    const ac = new AbortController();
    const waiting = m.nextSnapshot(ac.signal);
    const other = m.nextSnapshot();
    m.start();
    ac.abort(new Error('gave up'));
    await expect(waiting).rejects.toThrow('gave up');
    await expect(m.nextSnapshot(AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
    (await fake.call(1)).resolve({});
    expect((await other).seq).toBe(1);
  });

  it('stop() kills the poll in progress, rejects waiters and leaves no timer', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake, 10);
    m.start();
    (await fake.call(1)).resolve({});
    const second = await fake.call(2);
    const waiting = m.nextSnapshot();
    await m.stop();
    expect(second.options.signal?.aborted).toBe(true);
    await expect(waiting).rejects.toBeInstanceOf(SqueueMonitorStoppedError);
    expect(m.running).toBe(false);
    // Ten intervals later, still nothing new.
    await new Promise((r) => setTimeout(r, 100));
    expect(fake.calls).toHaveLength(2);
    await m.stop();
  });

  it('stop() between polls cancels the timer', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake, 30);
    const first = m.nextSnapshot();
    m.start();
    (await fake.call(1)).resolve({});
    await first;
    await new Promise((r) => setImmediate(r));
    // Poll 2 is now waiting on its timer.
    await m.stop();
    await new Promise((r) => setTimeout(r, 120));
    expect(fake.calls).toHaveLength(1);
  });

  it('can be started again after stop()', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake);
    m.start();
    (await fake.call(1)).resolve({});
    await m.stop();
    m.start();
    const waiting = m.nextSnapshot();
    const n = fake.calls.length;
    (await fake.call(n)).resolve({ stdout: `${U1} 0 1 PENDING Priority\n` });
    (await fake.call(n + 1)).resolve({ stdout: `${U1} 0 1 PENDING Priority\n` });
    expect((await waiting).jobs.has(U1)).toBe(true);
  });

  it('runs a real squeue-like command through the default runner', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fake-squeue-'));
    try {
      const script = join(dir, 'squeue');
      // Echo the arguments back as a job line so the test sees what was passed.
      writeFileSync(
        script,
        `#!/bin/sh\nprintf '%s 10000 100 PENDING %s\\n' ${U0} "$*"\necho 'not-a-container 0 0 RUNNING None'\n`,
      );
      chmodSync(script, 0o755);
      const m = new SqueueMonitor({ intervalMs: 1000, command: script, user: 'crunch' });
      monitors.push(m);
      const next = m.nextSnapshot();
      m.start();
      const snap = await next;
      expect([...snap.jobs.keys()]).toEqual([U0]);
      expect(snap.jobs.get(U0)?.reason).toBe(`--user=crunch --noheader --format=${SQUEUE_FORMAT}`);
      await m.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
