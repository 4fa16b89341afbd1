import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import type { CommandRunner, RunOptions, RunResult } from '../../../src/runners/slurm/commands.js';
import {
  CommandTimeoutError,
  SLURM_COMMAND_CONCURRENCY,
  parseSbatchJobId,
  run,
  slurmCli,
  slurmCommandQueue,
  spawnCommand,
} from '../../../src/runners/slurm/commands.js';

const node = process.execPath;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('spawnCommand', () => {
  it('collects stdout, stderr and the exit code, without a shell', async () => {
    const result = await spawnCommand(node, [
      '-e',
      'process.stdout.write(process.argv[1]); process.stderr.write("err"); process.exit(3)',
      '$HOME; `id`',
    ]);
    expect(result).toEqual({ code: 3, signal: null, stdout: '$HOME; `id`', stderr: 'err' });
  });

  it('writes input to stdin, and gives /dev/null otherwise', async () => {
    const echo = ['-e', 'process.stdin.pipe(process.stdout)'];
    expect((await spawnCommand(node, echo, { input: 'héllo\n' })).stdout).toBe('héllo\n');
    expect((await spawnCommand(node, echo)).stdout).toBe('');
  });

  it('uses the given environment as the whole environment', async () => {
    const result = await spawnCommand(node, ['-e', 'process.stdout.write(JSON.stringify(process.env))'], {
      env: { ONLY: 'this' },
    });
    expect(JSON.parse(result.stdout)).toEqual({ ONLY: 'this' });
  });

  it('reports a kill by a signal', async () => {
    const result = await spawnCommand(node, ['-e', 'process.kill(process.pid, "SIGTERM")']);
    expect(result.code).toBeNull();
    expect(result.signal).toBe('SIGTERM');
  });

  it('rejects when the command does not exist', async () => {
    await expect(spawnCommand('/nonexistent/sbatch', [])).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('kills the child on timeout and rejects only once it has exited', async () => {
    const started = spawnCommand(node, ['-e', 'console.log(process.pid); setInterval(() => {}, 1000)'], {
      timeoutMs: 300,
    });
    const err = await started.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandTimeoutError);
    const pid = Number((err as CommandTimeoutError).partial.stdout.trim());
    expect(pid).toBeGreaterThan(0);
    expect(alive(pid)).toBe(false);
  });

  it('kills the child on abort and rejects with the reason', async () => {
    const ac = new AbortController();
    const p = spawnCommand(node, ['-e', 'setInterval(() => {}, 1000)'], { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop it')), 100);
    await expect(p).rejects.toThrow('stop it');
  });

  it('rejects at once when already aborted', async () => {
    await expect(spawnCommand(node, ['-e', ''], { signal: AbortSignal.abort(new Error('early')) })).rejects.toThrow(
      'early',
    );
  });
});

describe('run (shared limiter)', () => {
  it(`runs at most ${SLURM_COMMAND_CONCURRENCY} commands at once`, async () => {
    const runs = Array.from({ length: 7 }, () => run(node, ['-e', 'setTimeout(() => {}, 150)']));
    expect(slurmCommandQueue.pending).toBe(SLURM_COMMAND_CONCURRENCY);
    expect(slurmCommandQueue.size).toBe(7 - SLURM_COMMAND_CONCURRENCY);
    const results = await Promise.all(runs);
    expect(results.every((r) => r.code === 0)).toBe(true);
    expect(slurmCommandQueue.pending).toBe(0);
  });

  it('drops a queued command when aborted, without running it', async () => {
    const marker = join(tmpdir(), `slurm-commands-test-${process.pid}-queued`);
    const blockers = Array.from({ length: SLURM_COMMAND_CONCURRENCY }, () =>
      run(node, ['-e', 'setTimeout(() => {}, 200)']),
    );
    const ac = new AbortController();
    const queued = run(node, ['-e', 'require("fs").writeFileSync(process.argv[1], "ran")', marker], {
      signal: ac.signal,
    });
    ac.abort(new Error('never mind'));
    await expect(queued).rejects.toThrow('never mind');
    expect(slurmCommandQueue.size).toBe(0);
    await Promise.all(blockers);
    expect(existsSync(marker)).toBe(false);
  });

  it('holds the slot until an aborted child has exited', async () => {
    const ready = join(tmpdir(), `slurm-commands-test-${process.pid}-ready`);
    rmSync(ready, { force: true });
    const ac = new AbortController();
    const running = run(
      node,
      [
        '-e',
        // Takes 300 ms to honour SIGTERM; says when its handler is in place.
        'process.on("SIGTERM", () => setTimeout(() => process.exit(0), 300));' +
          'require("fs").writeFileSync(process.argv[1], "");' +
          'setInterval(() => {}, 1000)',
        ready,
      ],
      { signal: ac.signal },
    );
    while (!existsSync(ready)) await new Promise((r) => setTimeout(r, 10));
    rmSync(ready, { force: true });
    ac.abort(new Error('cancel'));
    await new Promise((r) => setTimeout(r, 50));
    // SIGTERM was sent, but the child is still shutting down.
    expect(slurmCommandQueue.pending).toBe(1);
    await expect(running).rejects.toThrow('cancel');
    expect(slurmCommandQueue.pending).toBe(0);
  });
});

describe('slurmCli', () => {
  function recorder(results: Partial<RunResult>[] = []): { calls: Array<[string, readonly string[], RunOptions]>; runner: CommandRunner } {
    const calls: Array<[string, readonly string[], RunOptions]> = [];
    const runner: CommandRunner = async (cmd, args, options = {}) => {
      calls.push([cmd, args, options]);
      return { code: 0, signal: null, stdout: '', stderr: '', ...results.shift() };
    };
    return { calls, runner };
  }

  it('sbatch passes the script on stdin and the environment through', async () => {
    const { calls, runner } = recorder([{ stdout: 'Submitted batch job 42\n' }]);
    const result = await slurmCli(runner).sbatch(['--job-name=x'], '#!/bin/sh\nexec true\n', { env: { A: 'b' } });
    expect(calls).toEqual([['sbatch', ['--job-name=x'], { env: { A: 'b' }, input: '#!/bin/sh\nexec true\n' }]]);
    expect(parseSbatchJobId(result.stdout)).toBe(42);
  });

  it('scancel removes pending jobs and sends SIGTERM to the batch step otherwise', async () => {
    const { calls, runner } = recorder();
    expect((await slurmCli(runner).scancel('zzzzz-dz642-queuedcontainer')).code).toBe(0);
    expect(calls.map(([cmd, args]) => [cmd, ...args])).toEqual([
      ['scancel', '--name=zzzzz-dz642-queuedcontainer', '--state=pending'],
      ['scancel', '--name=zzzzz-dz642-queuedcontainer', '--batch', '--signal=TERM', '--state=running'],
      ['scancel', '--name=zzzzz-dz642-queuedcontainer', '--batch', '--signal=TERM', '--state=suspended'],
    ]);
  });

  it('scancel stops at the first failure', async () => {
    const { calls, runner } = recorder([{ code: 1, stderr: 'scancel: error: oops' }]);
    expect(await slurmCli(runner).scancel('x')).toMatchObject({ code: 1, stderr: 'scancel: error: oops' });
    expect(calls).toHaveLength(1);
  });

  it('renice runs scontrol update', async () => {
    const { calls, runner } = recorder();
    await slurmCli(runner).renice('zzzzz-dz642-queuedcontainer', 123);
    expect(calls.map(([cmd, args]) => [cmd, ...args])).toEqual([
      ['scontrol', 'update', 'JobName=zzzzz-dz642-queuedcontainer', 'Nice=123'],
    ]);
  });

  it('parseSbatchJobId reads both output styles', () => {
    expect(parseSbatchJobId('Submitted batch job 7\n')).toBe(7);
    expect(parseSbatchJobId('8;cluster\n')).toBe(8);
    expect(parseSbatchJobId('9\n')).toBe(9);
    expect(parseSbatchJobId('')).toBeUndefined();
  });
});
