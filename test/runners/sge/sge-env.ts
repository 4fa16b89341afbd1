/** Finding the single-node Grid Engine of scripts/sge-up.sh from the tests. */
import { SgeRunner, type SgeRunnerOptions } from '../../../src/runners/batch/sge/adapter.js';
import { isPendingState, isRunningState, parseQstatXml } from '../../../src/runners/batch/sge/qstat.js';
import { runWithInput } from '../../helpers/exec.js';
import type { BatchEnvironment, SeenJob } from '../batch/behaviour.js';

/** The environment Grid Engine's clients need (Debian's defaults unless set). */
export function sgeEnv(): NodeJS.ProcessEnv {
  return { ...process.env, SGE_ROOT: process.env.SGE_ROOT ?? '/var/lib/gridengine', SGE_CELL: process.env.SGE_CELL ?? 'default' };
}

/** Why the Grid Engine tests cannot run here, or undefined when qstat answers and a queue takes jobs. */
export async function sgeUnavailable(): Promise<string | undefined> {
  const r = await runWithInput('qstat', ['-f'], { env: sgeEnv() }).catch((err: Error) => err);
  if (r instanceof Error) return `qstat: ${r.message}`;
  if (r.code !== 0) return `qstat exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n')[0]}`;
  const usable = r.stdout.split('\n').some((line) => /^\S+@\S+\s+\S+\s+\d+\/\d+\/\d+\s+\S+\s+\S+\s*$/.test(line));
  return usable ? undefined : 'no queue instance without a state flag (qstat -f)';
}

/** The jobs named `name` in `qstat -u '*' -xml -pri` output, as the behaviour list sees jobs. */
export function seenJobs(qstatXml: string, name: string): SeenJob[] {
  return parseQstatXml(qstatXml)
    .filter((j) => j.name === name)
    .map((j) => ({
      id: j.id,
      name: j.name,
      state: isRunningState(j.state) ? 'running' : isPendingState(j.state) ? 'pending' : 'other',
      priority: j.priority ?? 0,
      pendingReason: j.state,
    }));
}

/** The behaviour list's runner factory for Grid Engine, with how long to wait for accounting records. */
export function sgeRunnerFactory(accounting: { accountingDelay: number; accountingAttempts: number }): BatchEnvironment['runner'] {
  return (o) => {
    const { args, gpuArgs, failingSubmit, jobOutputDir: _unused, ...options } = o as typeof o & SgeRunnerOptions;
    return new SgeRunner({ ...options, qsubArgs: args, qsubGpuArgs: gpuArgs, commands: failingSubmit ? { qsub: failingSubmit } : undefined, ...accounting });
  };
}
