/**
 * The Slurm adapter's commands and parsers against a real Slurm
 * (scripts/slurm-up.sh): submit a `sleep` job, see it in the queue query,
 * renice it, cancel it, see it gone, and read how it ended. Skipped, with a
 * warning, where `sinfo` does not answer.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import type { Container } from '../../../src/types.js';
import type { CommandSpec, QueueJob } from '../../../src/runners/batch/adapter.js';
import { spawnCommand } from '../../../src/runners/batch/commands.js';
import { batchScript } from '../../../src/runners/batch/script.js';
import { DEFAULT_SBATCH_ARGUMENTS, DEFAULT_SBATCH_GPU_ARGUMENTS, SLURM_TEMPLATE_RULES, SlurmAdapter } from '../../../src/runners/batch/slurm/adapter.js';
import { containerArguments } from '../../../src/runners/batch/template.js';
import { runWithInput } from '../../helpers/exec.js';
import { slurmUnavailable } from '../../helpers/slurm.js';
import { waitFor } from '../../helpers/wait.js';


const unavailable = await slurmUnavailable();
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
  const adapter = new SlurmAdapter({ jobOutputDir: '/tmp' });
  const exec = (spec: CommandSpec) => spawnCommand(adapter.commands[spec.command as keyof typeof adapter.commands], spec.args, { input: spec.input });
  const uuid = randomContainerUuid();
  const ours = async (): Promise<QueueJob | undefined> => {
    const r = await exec(adapter.queueQuery());
    expect(r.code).toBe(0);
    return adapter.parseQueue(r.stdout).find((j) => j.name === uuid);
  };

  afterAll(async () => void (await runWithInput('scancel', [`--name=${uuid}`])));

  it('submits, sees, renices, cancels, sees the job gone, and reads how it ended', async () => {
    const container: Container = {
      uuid,
      state: 'Locked',
      priority: 1,
      locked_by_uuid: null,
      runtime_constraints: { ram: 64 * 1024 * 1024, vcpus: 1 },
    };
    const args = containerArguments(container, { args: DEFAULT_SBATCH_ARGUMENTS, gpuArgs: DEFAULT_SBATCH_GPU_ARGUMENTS, reserveExtraRam: 0 }, SLURM_TEMPLATE_RULES);
    const spec = adapter.submit({ uuid, script: batchScript(['sleep', '300']), args: [...args, '--begin=now+3600'], container });
    expect(spec.args.slice(0, 8)).toEqual([
      '--nice=10000',
      '--no-requeue',
      '--chdir=/tmp',
      '--output=/tmp/crunch-run-%x-%j.out',
      `--job-name=${uuid}`,
      '--mem=64',
      '--cpus-per-task=1',
      '--tmp=0',
    ]);

    const submitted = await exec(spec);
    expect(submitted).toMatchObject({ code: 0 });
    const jobId = adapter.parseSubmit(submitted);
    expect(Number(jobId)).toBeGreaterThan(0);

    const seen = await ours();
    expect(seen).toMatchObject({ jobId, name: uuid, nice: 10000, state: 'pending', rawState: 'PENDING', pendingReason: 'BeginTime' });

    expect(await exec(adapter.renice(seen as QueueJob, 123))).toMatchObject({ code: 0 });
    await waitFor(async () => (await ours())?.nice === 123, 'reniced', 15_000);

    for (const c of adapter.cancel([seen as QueueJob])) expect(await exec(c)).toMatchObject({ code: 0 });
    await waitFor(async () => (await ours()) === undefined, 'gone', 30_000);

    // A second cancel of the gone job is "already gone", not a failure.
    for (const c of adapter.cancel([{ ...(seen as QueueJob), state: 'running' }])) {
      const r = await exec(c);
      expect(r.code === 0 || adapter.cancelGone(r)).toBe(true);
    }

    // Accounting is off here: the adapter falls back to scontrol within MinJobAge.
    const end = await adapter.finalState({ jobId: jobId as string, name: uuid }, (s) => exec(s), new AbortController().signal);
    expect(end).toMatchObject({ kind: 'CANCELLED' });
    expect(end?.detail).toMatch(new RegExp(`^Slurm job ${jobId} was cancelled outside the dispatcher`));
  }, 60_000);
});
