// The local runner's events through the Runner interface (`runner.events`,
// the RunnerEvents every runner shares): each event of its own emitter comes
// there too, with the same payload, and `finished` as the neutral
// `finished` (uuid, final state) plus `outcome` (the details); `status`
// counts what the CLI's status line shows.
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type Container, type RunnerEvents } from '../../../src/index.js';
import { safeEmitter } from '../../../src/runners/local/events.js';
import { LocalRunner, type LocalRunnerEvents } from '../../../src/runners/local/index.js';
import { FakeArvados } from '../../../src/testing/index.js';
import { makeCrunchRunStub, type CrunchRunStub } from '../../fixtures/crunch-run-stub.js';
import { waitFor } from '../../helpers/wait.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const UUID = 'zzzzz-dz642-000000000000001';

/** An event as emitted: its name and arguments. */
type Emitted = [name: string, ...args: unknown[]];

const LOCAL_NAMES: Array<keyof LocalRunnerEvents> = [
  'waiting', 'started', 'output', 'signalled', 'adopted', 'exited', 'finished', 'cancelled', 'rejected', 'unlocked', 'skipped',
];
const NEUTRAL_NAMES: Array<keyof RunnerEvents> = [...LOCAL_NAMES.filter((n) => n !== 'finished'), 'finished', 'outcome', 'warning', 'command', 'submitted', 'vanished', 'lost', 'orphans'];

/** Records every event `names` of `emitter` into `into`. */
function record(emitter: EventEmitter, names: readonly string[], into: Emitted[]): void {
  for (const name of names) emitter.on(name, (...args: unknown[]) => into.push([name, ...args]));
}

/** What the neutral emitter must have got for `local`'s events, in order. */
function expectedNeutral(local: readonly Emitted[]): Emitted[] {
  return local.flatMap(([name, ...args]): Emitted[] => {
    if (name !== 'finished') return [[name, ...args]];
    const e = args[0] as LocalRunnerEvents['finished'][0];
    return [
      ['finished', e.uuid, e.state],
      ['outcome', e],
    ];
  });
}

describe('the local runner’s neutral events (safeEmitter)', () => {
  const notice = { uuid: UUID, reason: 'r', message: 'm' };
  const one: { [K in keyof LocalRunnerEvents]: LocalRunnerEvents[K][0] } = {
    waiting: { uuid: UUID, need: { vcpus: 1, ram: MiB }, message: 'waiting for resources' },
    started: { uuid: UUID, pid: 1, vcpus: 1, ram: MiB, gpuIds: [] },
    output: { uuid: UUID, pid: 1, stream: 'stdout', line: 'x' },
    signalled: { uuid: UUID, pid: 1, signal: 'SIGINT', reason: 'stop' },
    adopted: { uuid: UUID, pid: 1 },
    exited: { uuid: UUID, pid: 1, code: 0, signal: null },
    finished: { uuid: UUID, state: 'Complete', exitCode: 0, process: { code: 0, signal: null } },
    cancelled: notice,
    rejected: notice,
    unlocked: notice,
    skipped: notice,
  };

  it('emits every local event on both emitters: the same payload object, finished as finished + outcome', () => {
    const local = new EventEmitter<LocalRunnerEvents>();
    const neutral = new EventEmitter<RunnerEvents>();
    const got: { local: Emitted[]; neutral: Emitted[] } = { local: [], neutral: [] };
    record(local as EventEmitter, LOCAL_NAMES, got.local);
    record(neutral as EventEmitter, NEUTRAL_NAMES, got.neutral);
    const emit = safeEmitter(local, neutral);
    for (const name of LOCAL_NAMES) (emit as (n: string, e: unknown) => void)(name, one[name]);
    expect(got.local).toEqual(LOCAL_NAMES.map((n) => [n, one[n]]));
    expect(got.neutral).toEqual(expectedNeutral(got.local));
    // The very objects, not copies.
    expect(got.neutral.find(([n]) => n === 'started')?.[1]).toBe(one.started);
    expect(got.neutral.find(([n]) => n === 'outcome')?.[1]).toBe(one.finished);
  });

  it('a listener that throws on one emitter keeps neither the other emitter nor the caller from going on', () => {
    const local = new EventEmitter<LocalRunnerEvents>();
    const neutral = new EventEmitter<RunnerEvents>();
    local.on('finished', () => {
      throw new Error('local listener');
    });
    neutral.on('finished', () => {
      throw new Error('neutral listener');
    });
    const outcomes: unknown[] = [];
    neutral.on('outcome', (e) => outcomes.push(e));
    expect(() => safeEmitter(local, neutral)('finished', one.finished)).not.toThrow();
    expect(outcomes).toEqual([one.finished]);
  });
});

describe('LocalRunner.events and LocalRunner.status', () => {
  let cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const f of cleanup.reverse()) await f();
    cleanup = [];
  });

  it('a run gives through runner.events what runner.on gives, and status counts running and waiting containers', async () => {
    const fake = await new FakeArvados().start();
    cleanup.push(() => fake.stop());
    const stub: CrunchRunStub = makeCrunchRunStub();
    cleanup.push(() => stub.remove());
    const runner = new LocalRunner({
      crunchRunCommand: stub.command,
      crunchRunArgs: ['--mode=wait-release', stub.recordArg],
      capacity: { vcpus: 1, ram: 8 * GiB, gpus: { stack: '', ids: [] } },
      stopGrace: 5_000,
      killGrace: 5_000,
      stateDir: join(stub.dir, 'state'),
    });
    cleanup.push(() => runner.close());
    const got: { local: Emitted[]; neutral: Emitted[] } = { local: [], neutral: [] };
    record(runner as EventEmitter, LOCAL_NAMES, got.local);
    record(runner.events as EventEmitter, NEUTRAL_NAMES, got.neutral);
    // runContainer, not the runner: the Dispatcher then does not hold back what does not fit, so one waits.
    const d = new Dispatcher({
      client: fake.client({ insecure: true, retryDelay: 5, maxRetryDelay: 20, timeout: 5_000 }),
      runContainer: runner.runContainer,
      pollInterval: 25,
      handleSignals: false,
      shutdownTimeout: 20_000,
      lockConcurrency: 1,
    });
    cleanup.push(() => d.stop());
    void d.run();
    const small = (priority: number, vcpus = 1): Partial<Container> => ({ priority, runtime_constraints: { vcpus, ram: 256 * MiB } });
    const first = fake.addContainer(small(3));
    const second = fake.addContainer(small(2));
    const tooBig = fake.addContainer(small(1, 8));
    // The container an event is about: its first argument, or that argument's uuid.
    const uuidOf = ([, a]: Emitted): unknown => (typeof a === 'string' ? a : (a as { uuid?: string } | undefined)?.uuid);
    const of = (name: string, uuid: string): Emitted[] => got.neutral.filter((e) => e[0] === name && uuidOf(e) === uuid);

    await waitFor(() => of('started', first.uuid).length === 1 && of('waiting', second.uuid).length === 1 && of('rejected', tooBig.uuid).length === 1, 'one started, one waiting, one rejected');
    await waitFor(() => runner.status.containers === 2, 'the rejected one gone');
    expect(runner.status).toEqual({ containers: 2, running: 1, waiting: 1 });
    expect(runner.status.scheduler).toBeUndefined();

    stub.release(first.uuid);
    await waitFor(() => of('started', second.uuid).length === 1, 'the second started');
    stub.release(second.uuid);
    await waitFor(() => of('outcome', first.uuid).length === 1 && of('outcome', second.uuid).length === 1, 'both finished');
    await waitFor(() => runner.status.containers === 0, 'both released');
    expect(runner.status).toEqual({ containers: 0, running: 0, waiting: 0 });

    expect(got.neutral).toEqual(expectedNeutral(got.local));
    expect(of('finished', first.uuid)).toEqual([['finished', first.uuid, 'Complete']]);
    expect(of('outcome', first.uuid)).toMatchObject([['outcome', { uuid: first.uuid, state: 'Complete', exitCode: 0, process: { code: 0, signal: null } }]]);
    expect(of('finished', tooBig.uuid)).toEqual([['finished', tooBig.uuid, 'Cancelled']]);
    expect(got.neutral.map(([n]) => n)).toEqual(expect.arrayContaining(['waiting', 'started', 'output', 'exited', 'finished', 'outcome', 'rejected']));
  });
});
