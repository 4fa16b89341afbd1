/**
 * Against a real Slurm (scripts/slurm-up.sh): submit a `sleep` job, watch it
 * with SqueueMonitor, renice it, cancel it and watch it leave the queue.
 * Skipped, with a warning, where `sinfo` does not answer.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Container } from '../../../src/types.js';
import { parseSbatchJobId, slurmCli } from '../../../src/runners/slurm/commands.js';
import { batchScript } from '../../../src/runners/slurm/script.js';
import type { SqueueSnapshot } from '../../../src/runners/slurm/squeue.js';
import { SqueueMonitor } from '../../../src/runners/slurm/squeue.js';
import { sbatchArgs } from '../../../src/runners/slurm/template.js';

function slurmAvailable(): string | undefined {
  const r = spawnSync('sinfo', ['--noheader', '--format=%T'], { encoding: 'utf8', timeout: 15_000 });
  if (r.error) return `sinfo: ${r.error.message}`;
  if (r.status !== 0) return `sinfo exited ${r.status}: ${r.stderr.trim()}`;
  if (!/^(idle|mixed|allocated)/m.test(r.stdout)) return `no usable node (sinfo: ${r.stdout.trim() || 'nothing'})`;
  return undefined;
}

const unavailable = slurmAvailable();
if (unavailable) {
  console.warn(`SKIPPING real-Slurm tests: ${unavailable}. Run scripts/slurm-up.sh as root to enable them.`);
}
const describeSlurm = unavailable ? describe.skip : describe;

function randomContainerUuid(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const tail = [...randomBytes(15)].map((b) => alphabet[b % alphabet.length]).join('');
  return `zzzzz-dz642-${tail}`;
}

describeSlurm('real Slurm', () => {
  const cli = slurmCli();
  const monitor = new SqueueMonitor({ intervalMs: 250 });
  const uuid = randomContainerUuid();

  /** Waits for snapshots until `predicate` holds, for at most `ms`. */
  async function until(predicate: (s: SqueueSnapshot) => boolean, ms: number): Promise<SqueueSnapshot> {
    const deadline = Date.now() + ms;
    for (;;) {
      const snap = await monitor.nextSnapshot(AbortSignal.timeout(Math.max(1, deadline - Date.now())));
      if (predicate(snap)) return snap;
    }
  }

  beforeAll(() => monitor.start());
  afterAll(async () => {
    await cli.scancel(uuid);
    await monitor.stop();
  });

  it('submits, sees, renices, cancels and sees the job gone', async () => {
    const container: Container = {
      uuid,
      state: 'Locked',
      priority: 1,
      locked_by_uuid: null,
      runtime_constraints: { ram: 64 * 1024 * 1024, vcpus: 1 },
    };
    const args = [...sbatchArgs(container, { reserveExtraRam: 0 }), '--output=/dev/null', '--chdir=/tmp'];
    expect(args.slice(0, 6)).toEqual([
      '--nice=10000',
      '--no-requeue',
      `--job-name=${uuid}`,
      '--mem=64',
      '--cpus-per-task=1',
      '--tmp=0',
    ]);

    const submitted = await cli.sbatch(args, batchScript(['sleep', '300']));
    expect(submitted).toMatchObject({ code: 0 });
    expect(parseSbatchJobId(submitted.stdout)).toBeGreaterThan(0);

    const seen = await monitor.nextSnapshot();
    expect(seen.jobs.get(uuid)).toMatchObject({ name: uuid, nice: 10000 });
    expect(['PENDING', 'CONFIGURING', 'RUNNING']).toContain(seen.jobs.get(uuid)?.state);

    const renice = await cli.renice(uuid, 123);
    expect(renice).toMatchObject({ code: 0 });
    await until((s) => s.jobs.get(uuid)?.nice === 123, 15_000);

    const cancelled = await cli.scancel(uuid);
    expect(cancelled).toMatchObject({ code: 0 });
    const gone = await until((s) => !s.jobs.has(uuid), 30_000);
    expect(gone.jobs.has(uuid)).toBe(false);

    // scontrol on a job that has left the queue fails: slurmctld still knows
    // it for MinJobAge (300 s by default), and forgets it after that.
    const late = await cli.renice(uuid, 5);
    expect(late.code).not.toBe(0);
    expect(late.stderr).toMatch(/Job has already finished|No jobs with name/);
  }, 60_000);
});
