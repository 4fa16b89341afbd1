// The Reporter reads a runner through the Runner interface alone: a fake
// with nothing but `status` and `events` gets the same lines and JSON
// fields as the local and batch runners (test/cli/local.test.ts and the
// batch command tests check those end to end).
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from '@jest/globals';
import { ArvadosClient } from '../../src/client/client.js';
import { Output } from '../../src/cli/output.js';
import { Reporter } from '../../src/cli/report.js';
import { Dispatcher } from '../../src/dispatcher/dispatcher.js';
import type { Runner, RunnerEvents, RunnerStatus } from '../../src/dispatcher/runner.js';
import type { Container } from '../../src/types.js';

const UUID = 'zzzzz-dz642-000000000000001';
const MiB = 2 ** 20;

/** A runner that is only what the Reporter may read. */
class FakeRunner {
  readonly emitter = new EventEmitter<RunnerEvents>();
  readonly events = this.emitter;
  status: RunnerStatus = { containers: 0, running: 0 };
}

function setup(opts: { json?: boolean; status?: RunnerStatus } = {}) {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (b: Buffer) => (text += b.toString()));
  const out = new Output({ json: opts.json ?? false, stdout: stream, stderr: stream });
  const d = new Dispatcher({ client: new ArvadosClient({ apiHost: '127.0.0.1:1', apiToken: 'v2/zzzzz-gj3su-000000000000000/x' }), runContainer: async () => {}, handleSignals: false });
  const runner = new FakeRunner();
  if (opts.status) runner.status = opts.status;
  const watched: Pick<Runner, 'status' | 'events'> = runner;
  const reporter = new Reporter(out, d).watch(watched);
  const lines = (): string[] => text.split('\n').filter(Boolean).map((l) => (opts.json ? l : l.slice('HH:MM:SS '.length)));
  const records = (): Array<Record<string, unknown>> =>
    lines().map((l) => {
      const { time: _time, ...rest } = JSON.parse(l) as Record<string, unknown>;
      return rest;
    });
  return { d, runner, reporter, lines, records, emit: runner.emitter.emit.bind(runner.emitter) };
}

/** One of each event a local runner emits, in the order of a container's life. */
function localLife(emit: FakeRunner['emitter']['emit']): void {
  emit('waiting', { uuid: UUID, need: { vcpus: 2, ram: 512 * MiB, gpus: { count: 1, stack: 'cuda' } }, message: 'waiting for resources: needs 2 vCPUs, 1 free' });
  emit('started', { uuid: UUID, pid: 42, vcpus: 2, ram: 512 * MiB, gpuIds: ['0'] });
  emit('output', { uuid: UUID, pid: 42, stream: 'stderr', line: 'hello' });
  emit('signalled', { uuid: UUID, pid: 42, signal: 'SIGINT', reason: 'priority is 0 (cancel requested)' });
  emit('exited', { uuid: UUID, pid: 42, code: 0, signal: null });
  emit('finished', UUID, 'Complete');
  emit('outcome', { uuid: UUID, state: 'Complete', exitCode: 0, process: { code: 0, signal: null } });
  emit('adopted', { uuid: UUID, pid: 43 });
  for (const name of ['cancelled', 'rejected', 'unlocked', 'skipped'] as const) emit(name, { uuid: UUID, reason: `${name} reason`, message: `${name} message` });
}

describe('Reporter.watch: the runner through its interface only', () => {
  it('prints the lines of a local runner’s events', () => {
    const s = setup();
    localLife(s.emit);
    expect(s.lines()).toEqual([
      `${UUID} waiting for resources: needs 2 vCPUs, 1 free`,
      `${UUID} started crunch-run, pid 42 (2 vCPU, 512 MiB RAM, GPU 0)`,
      `${UUID} | hello`,
      `${UUID} sent SIGINT to crunch-run pid 42: priority is 0 (cancel requested)`,
      // exited is for collectors only; the neutral finished is not a second line.
      `${UUID} finished: Complete (exit code 0)`,
      `${UUID} following crunch-run pid 43, started before a restart`,
      'warning: cancelled message',
      'warning: rejected message',
      'unlocked message',
      'skipped message',
    ]);
    expect(s.reporter.counts()).toMatchObject({ done: 1, complete: 1, cancelled: 0 });
  });

  it('gives --json the same fields as before the runner contract had them', () => {
    const s = setup({ json: true });
    localLife(s.emit);
    expect(s.records()).toEqual([
      { level: 'info', event: 'waiting', uuid: UUID, vcpus: 2, ram: 512 * MiB, gpus: 1, msg: `${UUID} waiting for resources: needs 2 vCPUs, 1 free` },
      { level: 'info', event: 'started', uuid: UUID, pid: 42, vcpus: 2, ram: 512 * MiB, gpus: ['0'], msg: `${UUID} started crunch-run, pid 42 (2 vCPU, 512 MiB RAM, GPU 0)` },
      { level: 'info', event: 'output', uuid: UUID, pid: 42, stream: 'stderr', line: 'hello', msg: `${UUID} | hello` },
      { level: 'info', event: 'signalled', uuid: UUID, pid: 42, signal: 'SIGINT', reason: 'priority is 0 (cancel requested)', msg: `${UUID} sent SIGINT to crunch-run pid 42: priority is 0 (cancel requested)` },
      { level: 'info', event: 'exited', uuid: UUID, pid: 42, code: 0, signal: null, msg: `${UUID} crunch-run pid 42 exited with code 0` },
      { level: 'info', event: 'finished', uuid: UUID, state: 'Complete', exit_code: 0, process_code: 0, process_signal: null, msg: `${UUID} finished: Complete (exit code 0)` },
      { level: 'info', event: 'adopted', uuid: UUID, pid: 43, msg: `${UUID} following crunch-run pid 43, started before a restart` },
      { level: 'warn', event: 'cancelled', uuid: UUID, reason: 'cancelled reason', msg: 'cancelled message' },
      { level: 'warn', event: 'rejected', uuid: UUID, reason: 'rejected reason', msg: 'rejected message' },
      { level: 'info', event: 'unlocked', uuid: UUID, reason: 'unlocked reason', msg: 'unlocked message' },
      { level: 'info', event: 'skipped', uuid: UUID, reason: 'skipped reason', msg: 'skipped message' },
    ]);
  });

  it('without a scheduler, the dispatcher’s end of a container counts it once and prints no second line', () => {
    const s = setup();
    s.emit('outcome', { uuid: UUID, state: 'Cancelled', exitCode: null });
    s.d.emit('stream-ended', UUID, 'finished', { uuid: UUID, state: 'Cancelled', exit_code: null } as Container);
    expect(s.lines()).toEqual([`${UUID} finished: Cancelled`]);
    expect(s.reporter.counts()).toMatchObject({ done: 1, cancelled: 1 });
  });

  it('with a scheduler, prints the batch lines, and finished from the dispatcher’s poll, not from the runner’s accounting', () => {
    const s = setup({ status: { containers: 1, running: 0, scheduler: 'Slurm' } });
    s.emit('submitted', UUID, 'ok', '123');
    s.emit('submitted', UUID, 'error');
    s.emit('finished', UUID, 'OUT_OF_MEMORY');
    s.d.emit('stream-ended', UUID, 'finished', { uuid: UUID, state: 'Complete', exit_code: 1 } as Container);
    s.emit('lost', { uuid: UUID, jobId: '123', action: 'cancelled', reason: 'the job vanished' });
    s.emit('orphans', [UUID]);
    s.emit('warning', 'sbatch is slow');
    expect(s.lines()).toEqual([
      `${UUID} submitted to Slurm as job 123`,
      `${UUID} finished: Complete (exit code 1)`,
      `warning: ${UUID} cancelled: the job vanished`,
      'found 1 job(s) of this cluster in the Slurm queue at startup; following them',
      'warning: sbatch is slow',
    ]);
  });

  it('counts the status line from status: waiting as given, else every container not running', () => {
    const local = setup({ status: { containers: 5, running: 2, waiting: 1 } });
    expect(local.reporter.counts()).toMatchObject({ queued: 1, running: 2 });
    expect(local.reporter.counts().scheduler).toBeUndefined();
    const batch = setup({ status: { containers: 5, running: 2, scheduler: 'PBS', pending: 3, pendingReasons: { Priority: 2, Resources: 1 }, atQuota: true } });
    expect(batch.reporter.counts()).toMatchObject({
      queued: 3,
      running: 2,
      scheduler: 'PBS',
      pending: 3,
      pendingReasons: [
        ['Priority', 2],
        ['Resources', 1],
      ],
      submissionsPaused: true,
    });
  });

  it('reads status afresh for every status line', () => {
    const s = setup();
    expect(s.reporter.counts()).toMatchObject({ queued: 0, running: 0 });
    s.runner.status = { containers: 3, running: 3 };
    expect(s.reporter.counts()).toMatchObject({ queued: 0, running: 3 });
  });
});
