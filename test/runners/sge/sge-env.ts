/** Finding the single-node Grid Engine of scripts/sge-up.sh from the tests. */
import { isPendingState, isRunningState, parseQstatXml } from '../../../src/runners/batch/sge/qstat.js';
import { runWithInput } from '../../helpers/exec.js';
import type { SeenJob } from '../batch/behaviour.js';

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
