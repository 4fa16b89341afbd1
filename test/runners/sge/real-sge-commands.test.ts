/**
 * The Grid Engine adapter's commands against a real Grid Engine
 * (scripts/sge-up.sh): what it builds is accepted, and what Grid Engine
 * prints is read right. Skipped, with a warning, where qstat does not answer.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import type { CommandSpec, QueueJob, RunResult } from '../../../src/runners/batch/adapter.js';
import { spawnCommand } from '../../../src/runners/batch/commands.js';
import { SgeAdapter } from '../../../src/runners/batch/sge/adapter.js';
import { sleep } from '../../../src/util/sleep.js';
import { runWithInput } from '../../helpers/exec.js';
import { waitFor } from '../../helpers/wait.js';
import { sgeEnv, sgeUnavailable } from './sge-env.js';

const unavailable = await sgeUnavailable();
if (unavailable) {
  console.warn(`SKIPPING the real Grid Engine command tests: ${unavailable}. Run scripts/sge-up.sh as root to enable them.`);
}
const describeSge = unavailable ? describe.skip : describe;

const adapter = new SgeAdapter({ accountingDelay: 1_000, accountingAttempts: 10 });
const env = sgeEnv();
// A random cluster prefix, starting with a digit to cover the job names
// Grid Engine refuses (see sge-name.ts).
const prefix = `9${randomBytes(2).toString('hex')}`;
const submitted: string[] = [];

function uuid(n: number): string {
  return `${prefix}-dz642-${String(n).padStart(15, '0')}`;
}
function exec(spec: CommandSpec): Promise<RunResult> {
  return spawnCommand(adapter.commands[spec.command], spec.args, { input: spec.input, env, timeoutMs: 30_000 });
}
async function queue(): Promise<QueueJob[]> {
  const r = await exec(adapter.queueQuery());
  expect(r.code).toBe(0);
  return adapter.parseQueue(r.stdout).filter((j) => j.name.startsWith(prefix));
}
/** {@link queue}, at most five times a second: each run is a qmaster request. */
async function slowQueue(): Promise<QueueJob[]> {
  await sleep(200);
  return queue();
}
async function submit(name: string, script: string, extra: string[] = []): Promise<string> {
  const r = await exec({ ...adapter.submit({ uuid: name, script, args: ['-o', '/dev/null', '-e', '/dev/null', ...extra], container: { uuid: name, state: 'Locked', priority: 1, locked_by_uuid: null } }) });
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
  const id = adapter.parseSubmit(r);
  expect(id).toMatch(/^\d+$/);
  submitted.push(id as string);
  return id as string;
}

afterAll(async () => {
  if (submitted.length) await runWithInput('qdel', submitted, { env });
});

describeSge('Grid Engine commands (real daemon)', () => {
  it('submits, lists, reprioritises and deletes a pending job; a second qdel counts as gone', async () => {
    const id = await submit(uuid(1), '#!/bin/sh\nexit 0\n', ['-h']);
    const [job] = await queue();
    expect(job).toMatchObject({ jobId: id, name: uuid(1), state: 'pending', rawState: 'hqw', priority: 1024, nice: 0 });
    const r = await exec(adapter.renice(job, 25));
    expect(r.code).toBe(0);
    expect((await queue())[0]).toMatchObject({ priority: 999, nice: 25 });
    const [del] = adapter.cancel([job]);
    expect((await exec(del)).code).toBe(0);
    const again = await exec(del);
    expect(again.code).not.toBe(0);
    expect(adapter.cancelGone(again)).toBe(true);
    await waitFor(async () => (await slowQueue()).length === 0, 'the job to leave qstat', 30_000);
  });

  it('reads why a finished job ended from qacct', async () => {
    const id = await submit(uuid(2), '#!/bin/sh\nexit 3\n');
    await waitFor(async () => (await slowQueue()).length === 0, 'the job to leave qstat', 30_000);
    const end = await adapter.finalState({ jobId: id, name: uuid(2) }, exec, new AbortController().signal);
    expect(end).toEqual({ kind: 'FAILED', exitCode: 3, detail: `Grid Engine job ${id} failed with exit status 3` });
  });

  it('shows a running job as running, on this host', async () => {
    const id = await submit(uuid(3), '#!/bin/sh\nsleep 30\n');
    // "t" (being transferred to the host) already counts as running; wait for "r".
    await waitFor(async () => (await slowQueue())[0]?.rawState === 'r', 'the job to run', 30_000);
    const [job] = await queue();
    expect(job).toMatchObject({ jobId: id, rawState: 'r', state: 'running' });
    expect(job.nodes).toBeTruthy();
    expect((await exec(adapter.cancel([job])[0])).code).toBe(0);
    await waitFor(async () => (await slowQueue()).length === 0, 'the job to leave qstat', 30_000);
    const end = await adapter.finalState({ jobId: id, name: uuid(3) }, exec, new AbortController().signal);
    expect(end?.kind).toBe('CANCELLED');
  });
});
