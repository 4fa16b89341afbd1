// The real Slurm of scripts/slurm-up.sh, as the system-tier tests find and
// clean it, asynchronously (see exec.ts for why).
import { runWithInput } from './exec.js';

/** Why the real-Slurm tests cannot run here, or undefined when `sinfo` shows a usable node. */
export async function slurmUnavailable(): Promise<string | undefined> {
  const r = await runWithInput('sinfo', ['--noheader', '--format=%T']).catch((err: Error) => err);
  if (r instanceof Error) return `sinfo: ${r.message}`;
  if (r.code !== 0) return `sinfo exited ${r.code}: ${r.stderr.trim()}`;
  return /^(idle|mixed|allocated|completing)/m.test(r.stdout) ? undefined : `no usable Slurm node (sinfo: ${r.stdout.trim() || 'nothing'})`;
}

/** Cancels every job whose name starts with `prefix` (a test's random cluster id), whoever else has jobs queued. */
export async function cancelJobsNamed(prefix: string): Promise<void> {
  const q = await runWithInput('squeue', ['--noheader', '--format=%i %j']).catch(() => ({ stdout: '' }));
  const ours = q.stdout.split('\n').filter((l) => l.split(' ')[1]?.startsWith(prefix)).map((l) => l.split(' ')[0]);
  if (ours.length) await runWithInput('scancel', ours);
}
