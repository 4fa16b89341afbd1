/**
 * Batched, repeated cancellation, with the Slurm adapter's commands and a
 * recording command runner.
 */
import { describe, expect, it } from '@jest/globals';
import type { CommandSpec, QueueJob, RunResult } from '../../../src/runners/batch/adapter.js';
import { Canceller } from '../../../src/runners/batch/canceller.js';
import { SlurmAdapter } from '../../../src/runners/batch/slurm/adapter.js';
import { TestClock } from '../../../src/testing/clock.js';

const U = (n: number): string => `zzzzz-dz642-${String(n).padStart(15, '0')}`;
const job = (n: number, state: QueueJob['state'] = 'running'): QueueJob => ({
  jobId: String(1000 + n),
  name: U(n),
  state,
  rawState: state === 'pending' ? 'PENDING' : 'RUNNING',
  priority: 1,
  nice: 0,
  pendingReason: '',
});

function setup(answer: (spec: CommandSpec) => Partial<RunResult> = () => ({})) {
  const clock = new TestClock();
  const calls: CommandSpec[] = [];
  const warnings: string[] = [];
  let release: (() => void) | undefined;
  let hold = false;
  const canceller = new Canceller({
    adapter: new SlurmAdapter({ squeueUser: 'crunch' }),
    exec: async (spec) => {
      calls.push(spec);
      if (hold) await new Promise<void>((r) => (release = r));
      return { code: 0, signal: null, stdout: '', stderr: '', ...answer(spec) };
    },
    onWarning: (m) => warnings.push(m),
    clock,
  });
  return { canceller, clock, calls, warnings, hold: (on: boolean) => (hold = on), release: () => release?.() };
}

describe('Canceller', () => {
  it('cancels what was asked for in one tick together: pending jobs removed, running ones SIGTERM on the batch step', async () => {
    const { canceller, calls } = setup();
    canceller.cancel(U(1), [job(1, 'pending')]);
    canceller.cancel(U(2), [job(2), job(3)]);
    await canceller.idle();
    expect(calls.map((c) => [c.command, ...c.args])).toEqual([
      ['scancel', '--state=pending', '1001'],
      ['scancel', '--batch', '--signal=TERM', '--state=running', '1002', '1003'],
    ]);
  });

  it('takes jobs that ended meanwhile in its stride, and warns about real failures', async () => {
    const gone = setup(() => ({ code: 1, stderr: 'scancel: error: Kill job error on job id 1001: Invalid job id specified\n' }));
    gone.canceller.cancel(U(1), [job(1)]);
    await gone.canceller.idle();
    expect(gone.warnings).toEqual([]);
    const broken = setup(() => ({ code: 1, stderr: 'scancel: error: Unable to contact slurm controller\n' }));
    broken.canceller.cancel(U(1), [job(1)]);
    await broken.canceller.idle();
    expect(broken.warnings).toEqual([expect.stringMatching(/scancel --batch --signal=TERM --state=running failed: .*Unable to contact/)]);
  });

  it('does not queue a container again while it is being cancelled, nor for a snapshot older than the last cancellation', async () => {
    const { canceller, clock, calls, hold, release } = setup();
    hold(true);
    canceller.cancel(U(1), [job(1)]);
    await new Promise((r) => setImmediate(r));
    canceller.cancel(U(1), [job(1)]);
    canceller.cancel(U(1), [job(1)], clock.now());
    hold(false);
    release();
    await canceller.idle();
    expect(calls).toHaveLength(1);
    // A snapshot taken before that cancellation ended says nothing new.
    canceller.cancel(U(1), [job(1)], clock.now() - 60_000);
    await canceller.idle();
    expect(calls).toHaveLength(1);
    // A later one that still shows the job: cancel again.
    await clock.advance(1);
    canceller.cancel(U(1), [job(1)], clock.now());
    await canceller.idle();
    expect(calls).toHaveLength(2);
  });
});
