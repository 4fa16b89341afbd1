/** Finding the single-node Grid Engine of scripts/sge-up.sh from the tests. */
import { spawnSync } from 'node:child_process';

/** The environment Grid Engine's clients need (Debian's defaults unless set). */
export function sgeEnv(): NodeJS.ProcessEnv {
  return { ...process.env, SGE_ROOT: process.env.SGE_ROOT ?? '/var/lib/gridengine', SGE_CELL: process.env.SGE_CELL ?? 'default' };
}

/** Why the Grid Engine tests cannot run here, or undefined when qstat answers and a queue takes jobs. */
export function sgeUnavailable(): string | undefined {
  const r = spawnSync('qstat', ['-f'], { encoding: 'utf8', timeout: 15_000, env: sgeEnv() });
  if (r.error) return `qstat: ${r.error.message}`;
  if (r.status !== 0) return `qstat exited ${r.status}: ${(r.stderr || r.stdout).trim().split('\n')[0]}`;
  const usable = r.stdout.split('\n').some((line) => /^\S+@\S+\s+\S+\s+\d+\/\d+\/\d+\s+\S+\s+\S+\s*$/.test(line));
  return usable ? undefined : 'no queue instance without a state flag (qstat -f)';
}
