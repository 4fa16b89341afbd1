/**
 * The core's queue poller, driven by a squeue whose every run waits until the
 * test answers it (Slurm's output format, parsed by the Slurm adapter).
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import type { CommandRunner, RunOptions, RunResult } from '../../../src/runners/batch/commands.js';
import { QueueMonitor, QueueMonitorStoppedError, type QueueSnapshot } from '../../../src/runners/batch/monitor.js';
import { parseSqueue } from '../../../src/runners/batch/slurm/adapter.js';
import { TestClock } from '../../../src/testing/clock.js';

const U0 = 'zzzzz-dz642-queuedcontainer';
const U1 = 'zzzzz-dz642-000000000000001';

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

const monitors: QueueMonitor[] = [];
function monitor(fake: FakeSqueue, intervalMs = 5, maxIntervalMs?: number, clock?: TestClock): QueueMonitor {
  const m = new QueueMonitor({
    intervalMs,
    maxIntervalMs,
    clock,
    name: 'squeue',
    query: (signal) => fake.runner('squeue', ['--noheader'], { signal }),
    parse: (stdout, onBadLine) => parseSqueue(stdout, onBadLine),
  });
  monitors.push(m);
  return m;
}
afterEach(async () => {
  await Promise.all(monitors.splice(0).map((m) => m.stop()));
});

describe('QueueMonitor', () => {
  it('polls at once on start and resolves waiters with the snapshot', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake);
    const waiting = m.nextSnapshot();
    m.start();
    const first = await fake.call(1);
    first.resolve({ stdout: `1|${U0}|10000|100|PENDING||Resources\n` });
    const snap = await waiting;
    expect(snap.seq).toBe(1);
    expect(snap.jobs.get(U0)?.rawState).toBe('PENDING');
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
    (await fake.call(2)).resolve({ stdout: `1|${U0}|0|1|RUNNING||None\n` });
    const snap = await waiting;
    expect(snap.seq).toBe(2);
    expect(snap.jobs.has(U0)).toBe(true);
  });

  it('treats a failed squeue as unknown: no snapshot, waiters keep waiting', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake);
    const errors: Error[] = [];
    const snapshots: QueueSnapshot[] = [];
    m.on('pollError', (e) => errors.push(e));
    m.on('snapshot', (s) => snapshots.push(s));
    m.start();
    (await fake.call(1)).resolve({ stdout: `1|${U0}|0|1|RUNNING||None\n` });
    const waiting = m.nextSnapshot().then((s) => s.jobs.has(U0));
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
    fake.calls[3].resolve({ stdout: `1|${U0}|0|1|RUNNING||None\n` });
    expect(await waiting).toBe(true);
    expect(snapshots.map((s) => s.seq)).toEqual([1, 4]);
  });

  it('treats output its parser throws on as a failed query, not an empty queue', async () => {
    let calls = 0;
    const m = new QueueMonitor({
      intervalMs: 5,
      name: 'qstat',
      parse: (stdout) => {
        if (stdout.startsWith('<html')) throw new Error('not qstat XML');
        return parseSqueue(stdout);
      },
      query: async () => {
        calls++;
        return { code: 0, signal: null, stdout: calls === 2 ? '<html>proxy error</html>' : `1|${U0}|0|1|RUNNING||None\n`, stderr: '' };
      },
    });
    monitors.push(m);
    const errors: string[] = [];
    const sizes: number[] = [];
    m.on('pollError', (e) => errors.push(e.message));
    m.on('snapshot', (s) => sizes.push(s.jobs.size));
    m.start();
    await m.nextSnapshot();
    await m.nextSnapshot();
    expect(errors).toEqual(['qstat answered something unreadable: not qstat XML']);
    // No snapshot ever claimed the job was gone.
    expect(sizes.every((n) => n === 1)).toBe(true);
  });

  it('survives a runner that throws and a listener that throws', async () => {
    let calls = 0;
    const m = new QueueMonitor({
      intervalMs: 5,
      parse: (stdout) => parseSqueue(stdout),
      query: async () => {
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
    const clock = new TestClock();
    const fake = new FakeSqueue();
    const m = monitor(fake, 5, undefined, clock);
    const waiting = m.nextSnapshot();
    // Many intervals on the monitor's clock: still no poll, and no timer.
    await clock.advance(1_000);
    expect(fake.calls).toHaveLength(0);
    expect(clock.pending).toBe(0);
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
    const clock = new TestClock();
    const fake = new FakeSqueue();
    const m = monitor(fake, 10, undefined, clock);
    m.start();
    (await fake.call(1)).resolve({});
    await clock.advance(10);
    const second = await fake.call(2);
    const waiting = m.nextSnapshot();
    await m.stop();
    expect(second.options.signal?.aborted).toBe(true);
    await expect(waiting).rejects.toBeInstanceOf(QueueMonitorStoppedError);
    expect(m.running).toBe(false);
    expect(clock.pending).toBe(0);
    // Ten intervals later, still nothing new.
    await clock.advance(100);
    expect(fake.calls).toHaveLength(2);
    await m.stop();
  });

  it('stop() between polls cancels the timer', async () => {
    const clock = new TestClock();
    const fake = new FakeSqueue();
    const m = monitor(fake, 30, undefined, clock);
    const first = m.nextSnapshot();
    m.start();
    (await fake.call(1)).resolve({});
    await first;
    await clock.settle();
    // Poll 2 is now waiting on its timer.
    expect(clock.pending).toBe(1);
    await m.stop();
    expect(clock.pending).toBe(0);
    await clock.advance(120);
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
    (await fake.call(n)).resolve({ stdout: `1|${U1}|0|1|PENDING||Priority\n` });
    (await fake.call(n + 1)).resolve({ stdout: `1|${U1}|0|1|PENDING||Priority\n` });
    expect((await waiting).jobs.has(U1)).toBe(true);
  });
});

describe('QueueMonitor: adaptive interval', () => {
  it('doubles the interval while the queue does not change, up to the cap, and drops back on a change or when hurried', async () => {
    const fake = new FakeSqueue();
    const m = monitor(fake, 5, 40);
    m.start();
    const same = `1|${U0}|0|1|PENDING||Priority\n`;
    let n = 1;
    (await fake.call(n++)).resolve({ stdout: same });
    const seen: number[] = [];
    // The first answer sets the baseline; each unchanged one doubles the interval.
    for (let i = 0; i < 4; i++) {
      (await fake.call(n++)).resolve({ stdout: same });
      await new Promise((r) => setImmediate(r));
      seen.push(m.interval);
    }
    expect(seen).toEqual([10, 20, 40, 40]);
    (await fake.call(n++)).resolve({ stdout: `1|${U0}|0|1|RUNNING|node1|None\n` });
    await new Promise((r) => setImmediate(r));
    expect(m.interval).toBe(5);
    (await fake.call(n++)).resolve({ stdout: `1|${U0}|0|1|RUNNING|node1|None\n` });
    await new Promise((r) => setImmediate(r));
    expect(m.interval).toBe(10);
    m.hurry();
    expect(m.interval).toBe(5);
  });

  it('polls sooner when hurried than the slowed-down interval would', async () => {
    // On a test clock: slowed down this far, the real intervals would add up to 41 s.
    const clock = new TestClock();
    const fake = new FakeSqueue();
    const m = monitor(fake, 20, 60_000, clock);
    m.start();
    const same = `1|${U0}|0|1|PENDING||Priority\n`;
    for (let n = 1; n <= 12; n++) {
      // Each poll starts when its timer ends: move the clock to it.
      while (fake.calls.length < n) if (!(await clock.next())) await clock.settle();
      fake.calls[n - 1].resolve({ stdout: same });
      await clock.settle();
    }
    // Slowed far beyond a test's patience now; an urgent waiter brings the next poll forward.
    expect(m.interval).toBeGreaterThan(10_000);
    const urgent = m.nextSnapshot(undefined, true);
    // One base interval is all it takes now.
    await clock.advance(20);
    expect(fake.calls).toHaveLength(13);
    fake.calls[12].resolve({ stdout: same });
    expect((await urgent).seq).toBe(13);
  });
});
