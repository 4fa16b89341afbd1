import { describe, expect, it } from '@jest/globals';
import type { CommandRunner, RunResult } from '../../../src/runners/slurm/commands.js';
import { ScancelBatcher } from '../../../src/runners/slurm/scancel.js';

const U = (i: number): string => `zzzzz-dz642-${String(i).padStart(15, '0')}`;

interface Call {
  cmd: string;
  args: readonly string[];
}

function harness(answer: (cmd: string, args: readonly string[]) => Partial<RunResult> = () => ({})) {
  const calls: Call[] = [];
  const warnings: string[] = [];
  const runner: CommandRunner = async (cmd, args) => {
    calls.push({ cmd, args });
    return { code: 0, signal: null, stdout: '', stderr: '', ...answer(cmd, args) };
  };
  const batcher = new ScancelBatcher({ runner, squeueRunner: runner, user: 'crunch', timeoutMs: 1000, onWarning: (m) => warnings.push(m) });
  return { calls, warnings, batcher };
}

/** squeue's `%i %j` answer for the names asked, with IDs 100, 101, … */
function lookup(args: readonly string[]): string {
  const names = (args.find((a) => a.startsWith('--name='))?.slice(7) ?? '').split(',');
  return names.map((n) => `${100 + Number(n.slice(-3))} ${n}\n`).join('');
}

describe('ScancelBatcher', () => {
  it('cancels a lone name by name, pending first, then SIGTERM to the batch step', async () => {
    const { calls, batcher } = harness();
    batcher.cancel(U(1));
    await batcher.idle();
    expect(calls).toEqual([
      { cmd: 'scancel', args: [`--name=${U(1)}`, '--state=pending'] },
      { cmd: 'scancel', args: [`--name=${U(1)}`, '--batch', '--signal=TERM', '--state=running'] },
      { cmd: 'scancel', args: [`--name=${U(1)}`, '--batch', '--signal=TERM', '--state=suspended'] },
    ]);
  });

  it('turns names asked for in one tick into job IDs with one squeue, then one scancel per state', async () => {
    const { calls, batcher, warnings } = harness((cmd, args) => (cmd === 'squeue' ? { stdout: lookup(args) } : {}));
    for (let i = 1; i <= 4; i++) batcher.cancel(U(i));
    batcher.cancel(U(1));
    await batcher.idle();
    expect(calls[0]).toEqual({ cmd: 'squeue', args: ['--noheader', '--user=crunch', '--format=%i %j', `--name=${[1, 2, 3, 4].map(U).join(',')}`] });
    expect(calls.slice(1)).toEqual([
      { cmd: 'scancel', args: ['--state=pending', '101', '102', '103', '104'] },
      { cmd: 'scancel', args: ['--batch', '--signal=TERM', '--state=running', '101', '102', '103', '104'] },
      { cmd: 'scancel', args: ['--batch', '--signal=TERM', '--state=suspended', '101', '102', '103', '104'] },
    ]);
    expect(warnings).toEqual([]);
  });

  it('does nothing for names no longer queued, and takes jobs that ended meanwhile in its stride', async () => {
    const { calls, batcher, warnings } = harness((cmd, args) =>
      cmd === 'squeue'
        ? { stdout: `${lookup(args).split('\n')[0]}\n` }
        : { code: 1, stderr: 'scancel: error: Kill job error on job id 101: Invalid job id specified\n' },
    );
    batcher.cancel(U(1));
    batcher.cancel(U(2));
    await batcher.idle();
    expect(calls.filter((c) => c.cmd === 'scancel').map((c) => c.args.at(-1))).toEqual(['101', '101', '101']);
    expect(warnings).toEqual([]);
  });

  it('falls back to cancelling by name when the lookup fails, and warns about real failures', async () => {
    const { calls, batcher, warnings } = harness((cmd, args) =>
      cmd === 'squeue' ? { code: 1, stderr: 'squeue: error: Socket timed out' } : args[0] === `--name=${U(2)}` ? { code: 1, stderr: 'scancel: error: Access/permission denied' } : {},
    );
    batcher.cancel(U(1));
    batcher.cancel(U(2));
    await batcher.idle();
    expect(calls.filter((c) => c.cmd === 'scancel').map((c) => c.args[0])).toEqual(
      expect.arrayContaining([`--name=${U(1)}`, `--name=${U(2)}`]),
    );
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`scancel --name=${U(2)} failed: .*permission denied`))]);
  });

  it('does not queue a name again while it is being cancelled, nor for a snapshot older than the last cancellation', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const calls: Call[] = [];
    const runner: CommandRunner = async (cmd, args) => {
      calls.push({ cmd, args });
      await gate;
      return { code: 0, signal: null, stdout: '', stderr: '' };
    };
    const batcher = new ScancelBatcher({ runner, squeueRunner: runner, user: 'crunch', timeoutMs: 1000, onWarning: () => undefined });
    const before = Date.now() - 1;
    batcher.cancel(U(1));
    await new Promise((r) => setImmediate(r));
    batcher.cancel(U(1));
    expect(batcher.busy.has(U(1))).toBe(true);
    release();
    await batcher.idle();
    expect(calls).toHaveLength(3);
    batcher.cancel(U(1), before);
    await batcher.idle();
    expect(calls).toHaveLength(3);
    batcher.cancel(U(1), Date.now() + 1);
    await batcher.idle();
    expect(calls).toHaveLength(6);
    await batcher.close();
    batcher.cancel(U(1));
    await batcher.idle();
    expect(calls).toHaveLength(6);
  });

  it('refuses a name that is not a container UUID', () => {
    const { batcher } = harness();
    expect(() => batcher.cancel('zzzzz-dz642-x,--all')).toThrow(TypeError);
  });
});
