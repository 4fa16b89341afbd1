/**
 * The shared batch behaviour list's environment for PBS, in two tiers: the
 * runner's commands answered in-process by the PBS stand-in (integration),
 * or the stand-in's qsub/qstat/qdel/qalter scripts first on PATH (system).
 * The stand-in follows OpenPBS 23.06's output formats (see bin/pbs-stub.mjs).
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PbsRunner, DEFAULT_PBS_QSUB_ARGUMENTS, type PbsRunnerOptions } from '../../../src/runners/batch/pbs/index.js';
import type { CommandRunner } from '../../../src/runners/batch/commands.js';
import type { BatchEnvironment, SeenJob } from '../batch/behaviour.js';
import { withFailingSubmit } from '../batch/failing-submit.js';
import { pbsCommand } from './bin/pbs-stub.mjs';

const BIN = resolve(dirname(fileURLToPath(import.meta.url)), 'bin');

/** What the `-f -F json` document holds of one job, as the test reads it. */
interface JsonJob {
  Job_Name: string;
  job_state: string;
  Priority: number;
  comment?: string;
}

/** A PBS behaviour environment; `cleanup()` deletes what is left and the job table. */
export function pbsEnvironment(mode: 'in-process' | 'commands'): BatchEnvironment & { dir: string; cleanup(): void } {
  const dir = mkdtempSync('/tmp/arvados-dispatch-pbs-');
  const bin = join(dir, 'bin');
  if (mode === 'commands') {
    // Bare command names resolved through PATH, as on a PBS submission host.
    mkdirSync(bin);
    for (const f of ['pbs-stub.mjs', 'qsub', 'qstat', 'qdel', 'qalter']) {
      copyFileSync(join(BIN, f), join(bin, f));
      chmodSync(join(bin, f), 0o755);
    }
    process.env.PATH = `${bin}:${process.env.PATH ?? ''}`;
    process.env.PBS_STUB_DIR = join(dir, 'table');
  }
  const table = join(dir, 'table');
  const run = (command: string, args: string[], stdin = ''): string => pbsCommand(table, command, args, { stdin }).stdout;
  const all = (): SeenJob[] => {
    const text = run('qstat', ['-f', '-F', 'json']);
    const doc = JSON.parse(text) as { Jobs?: Record<string, JsonJob> };
    return Object.entries(doc.Jobs ?? {}).map(([id, j]) => ({
      id,
      name: j.Job_Name,
      state: j.job_state === 'Q' || j.job_state === 'W' ? 'pending' : j.job_state === 'R' ? 'running' : 'other',
      priority: j.Priority,
      pendingReason: (j.comment ?? '').replace(/^Not Running:\s*/, ''),
    }));
  };
  // In-process: the runner's commands are answered by the stand-in's code itself.
  const inProcess: CommandRunner = (cmd, args, options = {}) => {
    const r = pbsCommand(table, basename(cmd), args, { stdin: options.input ?? '', env: options.env ?? {} });
    return Promise.resolve({ code: r.code, signal: null, stdout: r.stdout, stderr: r.stderr });
  };
  return {
    dir,
    name: mode === 'in-process' ? 'PBS (in-process stand-in)' : 'PBS (stand-in commands on PATH)',
    accounting: true,
    unavailable: undefined,
    runner: (o) => {
      const { args, gpuArgs, failingSubmit, jobOutputDir: _unused, ...options } = o as typeof o & PbsRunnerOptions;
      return new PbsRunner({ ...options, qsubArgs: args, qsubGpuArgs: gpuArgs, ...(failingSubmit ? { commands: { qsub: failingSubmit } } : {}) });
    },
    ...(mode === 'in-process' ? { commandRunner: withFailingSubmit(inProcess, 'qsub'), interval: 50 } : {}),
    commands: { submit: 'qsub', cancel: 'qdel', renice: 'qalter' },
    jobs: (name) => all().filter((j) => j.name === name),
    remove: (name) => {
      const ids = all().filter((j) => j.name === name).map((j) => j.id);
      if (ids.length) run('qdel', ids);
    },
    submitSleep: (name) => void run('qsub', ['-N', name, '-j', 'oe', '-o', '/dev/null'], 'sleep 600\n'),
    // A job with an execution time (-a) waits (state W) until deleted: the stand-in keeps no clock.
    holdArgs: [...DEFAULT_PBS_QSUB_ARGUMENTS, '-a', '2359'],
    realSubmit: join(mode === 'commands' ? bin : BIN, 'qsub'),
    cleanup: () => {
      const left = all().map((j) => j.id);
      if (left.length) run('qdel', left);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
