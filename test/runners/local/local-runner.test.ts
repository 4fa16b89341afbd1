// The local runner with a real Dispatcher on FakeArvados and real child
// processes: a stub crunch-run (test/fixtures/fake-crunch-run.mjs) that
// talks to the fake through the credentials the runner puts in its
// environment, and records its argv, environment and the signals it gets.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type Container, type DispatcherOptions } from '../../../src/index.js';
import { LocalRunner, type LocalRunnerEvents, type LocalRunnerOptions } from '../../../src/runners/local/index.js';
import { FakeArvados, type FakeArvadosOptions } from '../../../src/testing/index.js';
import { alive, makeCrunchRunStub, type CrunchRunStub } from '../../fixtures/crunch-run-stub.js';
import { waitFor } from '../../helpers/wait.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

type RunnerEvent = { [K in keyof LocalRunnerEvents]: { name: K } & LocalRunnerEvents[K][0] }[keyof LocalRunnerEvents];
const EVENT_NAMES: Array<keyof LocalRunnerEvents> = [
  'waiting', 'started', 'output', 'signalled', 'exited', 'finished', 'cancelled', 'rejected', 'unlocked', 'skipped',
];

interface Setup {
  fake: FakeArvados;
  stub: CrunchRunStub;
  runner: LocalRunner;
  d: Dispatcher;
  events: RunnerEvent[];
  warnings: string[];
  of<K extends RunnerEvent['name']>(name: K, uuid?: string): Array<Extract<RunnerEvent, { name: K }>>;
}

const current: Setup[] = [];

afterEach(async () => {
  for (const s of current.splice(0)) {
    await s.d.stop();
    await s.runner.close();
    await s.fake.stop();
    s.stub.remove();
  }
});

async function setup(
  opts: {
    mode?: string;
    args?: string[];
    runner?: Partial<LocalRunnerOptions>;
    dispatcher?: Partial<DispatcherOptions>;
    fake?: FakeArvadosOptions;
    containers?: (fake: FakeArvados) => void;
    /** Give the runner as the Dispatcher's `runner` (capacity, close) instead of its runContainer. */
    asRunner?: boolean;
  } = {},
): Promise<Setup> {
  const fake = await new FakeArvados(opts.fake).start();
  opts.containers?.(fake);
  const stub = makeCrunchRunStub();
  const runner = new LocalRunner({
    crunchRunCommand: stub.command,
    crunchRunArgs: [`--mode=${opts.mode ?? 'complete'}`, stub.recordArg, ...(opts.args ?? [])],
    capacity: { vcpus: 4, ram: 8 * GiB, gpus: { stack: '', ids: [] } },
    stopGrace: 5_000,
    killGrace: 5_000,
    stateDir: join(stub.dir, 'state'),
    ...opts.runner,
  });
  // The fake's certificate is self-signed: the stub gets ARVADOS_API_HOST_INSECURE=1 from credentialsEnv().
  const d = new Dispatcher({
    client: fake.client({ insecure: true, retryDelay: 5, maxRetryDelay: 20, timeout: 5_000 }),
    ...(opts.asRunner ? { runner } : { runContainer: runner.runContainer }),
    pollInterval: 25,
    handleSignals: false,
    shutdownTimeout: 20_000,
    ...opts.dispatcher,
  });
  const events: RunnerEvent[] = [];
  for (const name of EVENT_NAMES) {
    (runner.on as (n: string, l: (e: object) => void) => LocalRunner).call(runner, name, (e: object) => events.push({ name, ...e } as RunnerEvent));
  }
  const warnings: string[] = [];
  d.on('warning', (m) => warnings.push(m));
  const s: Setup = {
    fake,
    stub,
    runner,
    d,
    events,
    warnings,
    of: <K extends RunnerEvent['name']>(name: K, uuid?: string) =>
      events.filter((e): e is Extract<RunnerEvent, { name: K }> => e.name === name && (uuid === undefined || e.uuid === uuid)),
  };
  current.push(s);
  void d.run().catch((err: unknown) => warnings.push(`run rejected: ${String(err)}`));
  return s;
}

const small = (attrs: Partial<Container> = {}): Partial<Container> => ({
  priority: 1,
  runtime_constraints: { vcpus: 1, ram: 256 * MiB },
  ...attrs,
});

const stateOf = (s: Setup, uuid: string): string | undefined => s.fake.container(uuid)?.state;

describe('LocalRunner: running containers', () => {
  it('runs queued containers to Complete, once each', async () => {
    const s = await setup();
    const cs = s.fake.addContainers(3, (i) => small({ priority: i + 1 }));
    await waitFor(() => cs.every((c) => stateOf(s, c.uuid) === 'Complete'), 'all Complete');
    for (const c of cs) {
      expect(s.fake.runCount(c.uuid)).toBe(1);
      await waitFor(() => s.of('finished', c.uuid).length === 1, 'finished event');
      expect(s.of('finished', c.uuid)[0]).toMatchObject({ state: 'Complete', exitCode: 0, process: { code: 0, signal: null } });
      expect(s.of('started', c.uuid)).toHaveLength(1);
      expect(s.of('output', c.uuid).map((e) => e.line)).toContain(`fake crunch-run: ${c.uuid} is Running`);
    }
    await waitFor(() => s.d.status.tracked === 0 && s.runner.running === 0, 'everything released');
    expect(s.warnings).toEqual([]);
  });

  it('reads a finished container once after crunch-run exits (the release and the cleanup share the read)', async () => {
    const s = await setup();
    const c = s.fake.addContainer(small());
    await waitFor(() => s.of('finished', c.uuid).length === 1 && s.d.status.tracked === 0, 'finished and released');
    // One read shared by the release and the cleanup; plus, when a poll saw
    // it Complete before crunch-run exited, the read confirming the stream's end.
    expect(s.fake.requests.filter((r) => r.route === 'containers.get' && r.uuid === c.uuid).length).toBeLessThanOrEqual(2);
    expect(s.of('finished', c.uuid)[0]).toMatchObject({ state: 'Complete', exitCode: 0 });
  });

  it('does not hang on output pipes a grandchild of crunch-run keeps open', async () => {
    const s = await setup({ mode: 'orphan' });
    const c = s.fake.addContainer(small());
    await waitFor(() => s.of('finished', c.uuid).length === 1, 'finished');
    const grandchild = Number(readFileSync(join(s.stub.recordDir, `${c.uuid}.grandchild`), 'utf8'));
    try {
      expect(alive(grandchild)).toBe(true);
      expect(s.of('finished', c.uuid)[0]).toMatchObject({ state: 'Complete' });
      expect(s.runner.running).toBe(0);
    } finally {
      process.kill(grandchild, 'SIGKILL');
    }
  });

  it('works against a plain-HTTP API too', async () => {
    const s = await setup({ fake: { tls: false } });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Complete', 'Complete');
    expect(s.stub.record(c.uuid)?.env.ARVADOS_API_HOST).toBe(s.fake.apiHost);
  });

  it('passes argv [command, ...args, --runtime-engine=E, uuid] and ONLY the allowed environment; no token on argv', async () => {
    const s = await setup({
      args: ['--extra=1'],
      runner: {
        runtimeEngine: 'docker',
        processEnv: { PATH: '/usr/bin:/bin', TMPDIR: '/var/tmp', HOME: '/root', ARVADOS_API_TOKEN: 'parent-token', SECRET: 'x', CUDA_VISIBLE_DEVICES: '' },
      },
    });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Complete', 'Complete');
    const rec = s.stub.record(c.uuid)!;
    expect(rec.argv.slice(1)).toEqual([s.stub.command, '--mode=complete', s.stub.recordArg, '--extra=1', '--runtime-engine=docker', c.uuid]);
    expect(Object.keys(rec.env).sort()).toEqual(['ARVADOS_API_HOST', 'ARVADOS_API_HOST_INSECURE', 'ARVADOS_API_TOKEN', 'PATH', 'TMPDIR']);
    expect(rec.env).toMatchObject({
      PATH: '/usr/bin:/bin',
      TMPDIR: '/var/tmp',
      ARVADOS_API_HOST: s.fake.apiHost,
      ARVADOS_API_TOKEN: s.fake.rootToken.token,
      ARVADOS_API_HOST_INSECURE: '1',
    });
    for (const a of rec.argv) expect(a).not.toContain(s.fake.rootToken.token);
  });

  it('leaves TMPDIR out when it is not set', async () => {
    const s = await setup({ runner: { processEnv: { PATH: process.env.PATH } } });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Complete', 'Complete');
    expect(Object.keys(s.stub.record(c.uuid)!.env).sort()).toEqual(['ARVADOS_API_HOST', 'ARVADOS_API_HOST_INSECURE', 'ARVADOS_API_TOKEN', 'PATH']);
  });

  it('starts an adopted Locked container normally (after a restart)', async () => {
    const s = await setup({
      containers: (fake) => fake.addContainer(small({ uuid: 'zzzzz-dz642-adoptedlocked01', state: 'Locked', locked_by_uuid: fake.rootToken.uuid })),
    });
    await waitFor(() => stateOf(s, 'zzzzz-dz642-adoptedlocked01') === 'Complete', 'Complete');
    expect(s.stub.record('zzzzz-dz642-adoptedlocked01')).toBeDefined();
  });
});

describe('LocalRunner: resources', () => {
  it('cancels at once, with the reason, a container that can never fit; nothing is started', async () => {
    const s = await setup();
    const c = s.fake.addContainer(small({ runtime_constraints: { vcpus: 8, ram: 256 * MiB } }));
    const ok = s.fake.addContainer(small());
    await waitFor(() => s.of('rejected', c.uuid).length === 1, 'rejected event');
    expect(stateOf(s, c.uuid)).toBe('Cancelled');
    const error = String(s.fake.container(c.uuid)?.runtime_status?.error);
    expect(error).toBe('container resource request cannot be fulfilled on this node: needs 8 vCPUs, capacity is 4');
    expect(s.of('rejected', c.uuid)).toEqual([
      { name: 'rejected', uuid: c.uuid, reason: error, message: `${error}; cancelling ${c.uuid}` },
    ]);
    expect(s.of('finished', c.uuid)).toMatchObject([{ state: 'Cancelled' }]);
    expect(s.stub.record(c.uuid)).toBeUndefined();
    expect(s.fake.runCount(c.uuid)).toBe(0);
    // It did not hold up the queue.
    await waitFor(() => stateOf(s, ok.uuid) === 'Complete', 'the other one Complete');
  });

  it('never cancels for a record without sane sizes (ram 0): it unlocks with the reason instead (issue 18 item 4)', async () => {
    const s = await setup();
    const c = s.fake.addContainer(small({ runtime_constraints: { vcpus: 1, ram: 0 } }));
    await waitFor(() => s.warnings.some((w) => w.includes(c.uuid) && w.includes('makes no sense')), 'the warning');
    await waitFor(() => s.d.status.tracked === 0, 'released');
    expect(stateOf(s, c.uuid)).toBe('Queued');
    expect(s.fake.transitions.filter((t) => t.uuid === c.uuid).map((t) => t.to)).not.toContain('Cancelled');
    expect(s.fake.runCount(c.uuid)).toBe(0);
  });

  it('counts ram + keep_cache_ram + reserveExtraRam against the RAM', async () => {
    const s = await setup({ runner: { reserveExtraRam: 600 * MiB, capacity: { vcpus: 4, ram: 2 * GiB, gpus: { stack: '', ids: [] } } } });
    const c = s.fake.addContainer(small({ runtime_constraints: { vcpus: 1, ram: GiB, keep_cache_ram: 512 * MiB } }));
    await waitFor(() => stateOf(s, c.uuid) === 'Cancelled', 'Cancelled');
    expect(s.fake.container(c.uuid)?.runtime_status?.error).toMatch(/needs 2.1 GiB RAM, capacity is 2 GiB$/);
    expect(s.runner.needOf(s.fake.container(c.uuid)!)).toEqual({ vcpus: 1, ram: GiB + 512 * MiB + 600 * MiB });
  });

  it('starts containers first come, first served: a small one waits behind a big one (head-of-line)', async () => {
    const s = await setup({
      mode: 'wait-release',
      runner: { capacity: { vcpus: 2, ram: 8 * GiB, gpus: { stack: '', ids: [] } } },
      // One lock at a time, so containers reach the runner in priority order.
      dispatcher: { lockConcurrency: 1 },
    });
    const a = s.fake.addContainer(small({ priority: 3 }));
    const b = s.fake.addContainer(small({ priority: 2, runtime_constraints: { vcpus: 2, ram: 256 * MiB } }));
    const c = s.fake.addContainer(small({ priority: 1 }));
    await waitFor(() => s.of('waiting').length === 2 && s.of('started').length === 1, 'a started, b and c waiting');
    expect(s.of('started')[0].uuid).toBe(a.uuid);
    expect(s.of('waiting').map((e) => e.uuid)).toEqual([b.uuid, c.uuid]);
    expect(s.runner.waiting).toBe(2);
    // c would fit into the free vCPU, but must not jump b.
    expect(s.runner.pool.available.vcpus).toBe(1);

    s.stub.release(a.uuid);
    await waitFor(() => s.of('started', b.uuid).length === 1, 'b started');
    expect(s.of('started', c.uuid)).toHaveLength(0);
    s.stub.release(b.uuid);
    await waitFor(() => s.of('started', c.uuid).length === 1, 'c started');
    s.stub.release(c.uuid);
    await waitFor(() => [a, b, c].every((x) => s.of('finished', x.uuid).length === 1), 'all finished');
    expect([a, b, c].map((x) => stateOf(s, x.uuid))).toEqual(['Complete', 'Complete', 'Complete']);

    const order = s.events.filter((e) => e.name === 'started' || e.name === 'exited').map((e) => `${e.name} ${e.uuid === a.uuid ? 'a' : e.uuid === b.uuid ? 'b' : 'c'}`);
    expect(order).toEqual(['started a', 'exited a', 'started b', 'exited b', 'started c', 'exited c']);
  });

  it('gives each container its own GPUs through CUDA_VISIBLE_DEVICES (gpu and legacy cuda constraints)', async () => {
    const s = await setup({ mode: 'wait-release', runner: { capacity: { vcpus: 4, ram: 8 * GiB, gpus: { stack: 'cuda', ids: ['0', '1', '2'] } } } });
    const two = s.fake.addContainer(small({ priority: 2, runtime_constraints: { vcpus: 1, ram: MiB, gpu: { device_count: 2, stack: 'cuda' } } }));
    const legacy = s.fake.addContainer(small({ priority: 1, runtime_constraints: { vcpus: 1, ram: MiB, cuda: { device_count: 1 } } }));
    const none = s.fake.addContainer(small({ priority: 1 }));
    await waitFor(() => [two, legacy, none].every((c) => s.stub.record(c.uuid)), 'all three started');
    const gpusOf = (uuid: string): string | undefined => s.stub.record(uuid)!.env.CUDA_VISIBLE_DEVICES;
    const ids = [gpusOf(two.uuid), gpusOf(legacy.uuid)];
    expect(ids.join(',').split(',').sort()).toEqual(['0', '1', '2']);
    expect(gpusOf(two.uuid)?.split(',')).toHaveLength(2);
    expect(gpusOf(legacy.uuid)?.split(',')).toHaveLength(1);
    expect(s.stub.record(none.uuid)!.env).not.toHaveProperty('CUDA_VISIBLE_DEVICES');
    expect(s.stub.record(two.uuid)!.env).not.toHaveProperty('AMD_VISIBLE_DEVICES');
    // crunch-run may record its start before the runner's 'started' event is emitted.
    await waitFor(() => s.of('started', two.uuid).length === 1, 'the started event');
    expect(s.of('started', two.uuid)[0].gpuIds).toEqual(gpusOf(two.uuid)?.split(','));
    for (const c of [two, legacy, none]) s.stub.release(c.uuid);
    await waitFor(() => [two, legacy, none].every((c) => stateOf(s, c.uuid) === 'Complete'), 'all Complete');
  });

  it('uses AMD_VISIBLE_DEVICES for ROCm GPUs, and cancels a CUDA request on a ROCm node', async () => {
    const s = await setup({ runner: { capacity: { vcpus: 4, ram: 8 * GiB, gpus: { stack: 'rocm', ids: ['4', '5'] } } } });
    const rocm = s.fake.addContainer(small({ runtime_constraints: { vcpus: 1, ram: MiB, gpu: { device_count: 1, stack: 'rocm' } } }));
    const cuda = s.fake.addContainer(small({ runtime_constraints: { vcpus: 1, ram: MiB, gpu: { device_count: 1, stack: 'cuda' } } }));
    await waitFor(() => stateOf(s, rocm.uuid) === 'Complete' && stateOf(s, cuda.uuid) === 'Cancelled', 'final states');
    expect(s.stub.record(rocm.uuid)!.env.AMD_VISIBLE_DEVICES).toBe('4');
    expect(s.stub.record(rocm.uuid)!.env).not.toHaveProperty('CUDA_VISIBLE_DEVICES');
    expect(s.fake.container(cuda.uuid)?.runtime_status?.error).toMatch(/needs cuda GPUs, this node's GPUs are rocm/);
  });

  it('gives up waiting when the priority drops to 0; the dispatcher unlocks it', async () => {
    const s = await setup({ mode: 'wait-release', runner: { capacity: { vcpus: 1, ram: 8 * GiB, gpus: { stack: '', ids: [] } } } });
    const first = s.fake.addContainer(small({ priority: 2 }));
    const second = s.fake.addContainer(small({ priority: 1 }));
    await waitFor(() => s.of('waiting', second.uuid).length === 1 && s.stub.record(first.uuid), 'second waiting');
    s.fake.setPriority(second.uuid, 0);
    await waitFor(() => stateOf(s, second.uuid) === 'Queued', 'second unlocked');
    expect(s.of('skipped', second.uuid)).toMatchObject([{ reason: 'priority is 0 (cancel requested)' }]);
    expect(s.runner.waiting).toBe(0);
    s.stub.release(first.uuid);
    await waitFor(() => stateOf(s, first.uuid) === 'Complete', 'first Complete');
    expect(s.stub.record(second.uuid)).toBeUndefined();
  });

  it('reports a container cancelled while it waited as finished, without starting it', async () => {
    const s = await setup({ mode: 'wait-release', runner: { capacity: { vcpus: 1, ram: 8 * GiB, gpus: { stack: '', ids: [] } } } });
    const first = s.fake.addContainer(small({ priority: 2 }));
    const second = s.fake.addContainer(small({ priority: 1 }));
    await waitFor(() => s.of('waiting', second.uuid).length === 1, 'second waiting');
    s.fake.cancelContainer(second.uuid);
    await waitFor(() => s.of('finished', second.uuid).length === 1, 'finished event');
    expect(s.of('finished', second.uuid)[0]).toMatchObject({ state: 'Cancelled', exitCode: null });
    s.stub.release(first.uuid);
    await waitFor(() => stateOf(s, first.uuid) === 'Complete', 'first Complete');
    expect(s.stub.record(second.uuid)).toBeUndefined();
  });
});

describe('LocalRunner: stopping crunch-run', () => {
  it('sends SIGINT when the priority drops to 0; crunch-run cancels the container', async () => {
    const s = await setup({ mode: 'hang' });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Running', 'Running');
    s.fake.setPriority(c.uuid, 0);
    await waitFor(() => stateOf(s, c.uuid) === 'Cancelled', 'Cancelled');
    await waitFor(() => s.of('finished', c.uuid).length === 1, 'finished');
    expect(s.stub.signals(c.uuid)).toEqual(['SIGINT']);
    expect(s.of('signalled', c.uuid)).toMatchObject([{ signal: 'SIGINT', reason: 'priority is 0 (cancel requested)' }]);
    expect(s.of('finished', c.uuid)[0]).toMatchObject({ state: 'Cancelled', process: { code: 0, signal: null } });
    expect(s.of('cancelled', c.uuid)).toEqual([]);
  });

  it('sends SIGINT when the updates stream ends (dispatcher stop) and waits for crunch-run', async () => {
    const s = await setup({ mode: 'hang' });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Running', 'Running');
    const pid = s.stub.record(c.uuid)!.pid;
    await s.d.stop();
    // stop() resolves once runners settled, i.e. crunch-run has exited.
    expect(alive(pid)).toBe(false);
    expect(s.stub.signals(c.uuid)).toEqual(['SIGINT']);
    expect(s.of('signalled', c.uuid)[0].reason).toBe('the updates stream ended (stopped)');
    expect(stateOf(s, c.uuid)).toBe('Cancelled');
  });

  it('escalates to SIGTERM and SIGKILL for a crunch-run that ignores SIGINT, then cancels, even while the dispatcher stops', async () => {
    const s = await setup({ mode: 'stubborn', runner: { stopGrace: 150, killGrace: 150 } });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Running', 'Running');
    await s.d.stop();
    expect(s.of('signalled', c.uuid).map((e) => e.signal)).toEqual(['SIGINT', 'SIGTERM', 'SIGKILL']);
    expect(s.stub.signals(c.uuid)).toEqual(['SIGINT', 'SIGTERM']);
    expect(s.of('exited', c.uuid)).toMatchObject([{ code: null, signal: 'SIGKILL' }]);
    expect(stateOf(s, c.uuid)).toBe('Cancelled');
    expect(s.fake.container(c.uuid)?.runtime_status?.error).toBe('crunch-run was killed by SIGKILL without finalizing the container');
  });

  it('waits stopGrace for crunch-run to exit by itself when its container is already final, then SIGINT', async () => {
    const s = await setup({ mode: 'hang', runner: { stopGrace: 100 } });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Running', 'Running');
    s.fake.cancelContainer(c.uuid);
    await waitFor(() => s.of('finished', c.uuid).length === 1, 'finished');
    expect(s.of('signalled', c.uuid)).toMatchObject([{ signal: 'SIGINT', reason: 'the container is already final but crunch-run is still running' }]);
  });

  it('Dispatcher.kill: SIGINT at once (not after stopGrace), the container cancelled with the reason', async () => {
    const s = await setup({ mode: 'hang', runner: { stopGrace: 600_000 }, asRunner: true });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Running' && s.d.container(c.uuid)?.state === 'Running', 'Running');
    await expect(s.d.kill(c.uuid, 'via management API: stuck')).resolves.toBe('cancelled');
    await waitFor(() => s.of('exited', c.uuid).length === 1, 'crunch-run exited');
    expect(s.stub.signals(c.uuid)).toEqual(['SIGINT']);
    expect(s.of('signalled', c.uuid)).toMatchObject([{ signal: 'SIGINT', reason: 'killed: via management API: stuck' }]);
    expect(s.fake.container(c.uuid)).toMatchObject({ state: 'Cancelled', runtime_status: { error: 'via management API: stuck' } });
  });

  it('a stop while crunch-run is given time to exit after its container became final signals it at once', async () => {
    const s = await setup({ mode: 'hang', runner: { stopGrace: 600_000 } });
    const ended: string[] = [];
    s.d.on('stream-ended', (uuid, reason) => ended.push(`${uuid} ${reason}`));
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Running', 'Running');
    s.fake.cancelContainer(c.uuid);
    // The runner now gives crunch-run stopGrace to exit by itself; a stop must not wait for that.
    await waitFor(() => ended.includes(`${c.uuid} finished`), 'the dispatcher saw it final');
    expect(s.of('signalled', c.uuid)).toEqual([]);
    await s.d.stop();
    expect(s.of('signalled', c.uuid)[0]).toMatchObject({ signal: 'SIGINT', reason: 'the dispatcher is shutting down' });
    expect(s.of('exited', c.uuid)).toHaveLength(1);
  });

  it('close() stops every crunch-run and resolves once all have exited; it is idempotent', async () => {
    const s = await setup({ mode: 'hang' });
    const cs = s.fake.addContainers(3, () => small());
    await waitFor(() => cs.every((c) => stateOf(s, c.uuid) === 'Running'), 'all Running');
    const pids = cs.map((c) => s.stub.record(c.uuid)!.pid);
    expect(s.runner.running).toBe(3);
    const closing = s.runner.close();
    expect(s.runner.close()).toBe(closing);
    await closing;
    expect(pids.filter(alive)).toEqual([]);
    expect(s.runner.running).toBe(0);
    expect(cs.map((c) => stateOf(s, c.uuid))).toEqual(['Cancelled', 'Cancelled', 'Cancelled']);
    for (const c of cs) expect(s.stub.signals(c.uuid)).toEqual(['SIGINT']);
  });
});

describe('LocalRunner: when crunch-run does not finish the job', () => {
  it('cancels a container crunch-run left Running, saying so in runtime_status.error', async () => {
    const s = await setup({ mode: 'exit', args: ['--code=3'] });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Cancelled', 'Cancelled');
    expect(s.fake.container(c.uuid)?.runtime_status?.error).toBe('crunch-run exited with code 3 without finalizing the container');
    await waitFor(() => s.of('cancelled', c.uuid).length === 1, 'cancelled event');
    expect(s.of('cancelled', c.uuid)[0].message).toBe(
      `after "${s.stub.command}" process termination, container state for ${c.uuid} is "Running"; updating it to "Cancelled" (crunch-run exited with code 3)`,
    );
    // The runner cancelled it (the lock holder), not the dispatcher's fallback.
    const last = s.fake.transitions.filter((t) => t.uuid === c.uuid).at(-1);
    expect(last).toMatchObject({ from: 'Running', to: 'Cancelled', by: s.fake.rootToken.uuid });
  });

  it('unlocks a container crunch-run left Locked; the API cancels it after MaxDispatchAttempts', async () => {
    const s = await setup({ mode: 'exit-locked', args: ['--code=1'], fake: { maxDispatchAttempts: 2 } });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Cancelled', 'Cancelled');
    expect(s.of('unlocked', c.uuid).length).toBeGreaterThanOrEqual(1);
    expect(s.of('unlocked', c.uuid)[0].reason).toBe('crunch-run exited with code 1 before starting the container');
    expect(s.fake.container(c.uuid)?.runtime_status?.error).toMatch(/MaxDispatchAttempts/);
    await waitFor(() => s.of('finished', c.uuid).length === 1, 'finished');
  });

  it('cancels a container adopted in Running state: its crunch-run cannot be re-attached', async () => {
    const uuid = 'zzzzz-dz642-adoptedrunning1';
    const s = await setup({
      containers: (fake) => fake.addContainer(small({ uuid, state: 'Running', locked_by_uuid: fake.rootToken.uuid })),
    });
    await waitFor(() => s.of('cancelled', uuid).length === 1, 'cancelled event');
    expect(stateOf(s, uuid)).toBe('Cancelled');
    expect(s.fake.container(uuid)?.runtime_status?.error).toBe(
      'the dispatcher restarted while this container was running; its crunch-run process cannot be re-attached',
    );
    expect(s.of('cancelled', uuid)[0].message).toBe(
      `container ${uuid} is already Running after a dispatcher restart; its crunch-run process cannot be re-attached, so cancelling it`,
    );
    expect(s.stub.record(uuid)).toBeUndefined();
  });

  it('a start failing with EMFILE/ENFILE is retried while the container stays locked, never charged (issue 18 item 7)', async () => {
    let failures = 0;
    const exhausted: typeof spawn = ((...args: Parameters<typeof spawn>) => {
      if (failures < 2) {
        failures++;
        throw Object.assign(new Error(`spawn ${String(args[0])} ${failures === 1 ? 'EMFILE' : 'ENFILE'}`), { code: failures === 1 ? 'EMFILE' : 'ENFILE' });
      }
      return spawn(...args);
    }) as typeof spawn;
    const s = await setup({ runner: { spawn: exhausted, spawnRetryDelays: [20, 20, 20] } });
    const c = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Complete', 'Complete');
    expect(failures).toBe(2);
    expect(s.fake.transitions.filter((t) => t.uuid === c.uuid).map((t) => t.to)).toEqual(['Locked', 'Running', 'Complete']);
    expect(s.fake.logs).toEqual([]);
  });

  it('a start that stays out of file descriptors unlocks the container without charging it (no backoff, no cancel)', async () => {
    let calls = 0;
    const never: typeof spawn = (() => {
      calls++;
      throw Object.assign(new Error('spawn crunch-run EMFILE'), { code: 'EMFILE' });
    }) as unknown as typeof spawn;
    const s = await setup({ runner: { spawn: never, spawnRetryDelays: [10] }, fake: { maxDispatchAttempts: 100 }, dispatcher: { failureBackoff: { initial: 3_600_000 } } });
    const c = s.fake.addContainer(small());
    // Relocked at once: no failure backoff (an hour here) was charged.
    await waitFor(() => s.fake.transitions.filter((t) => t.uuid === c.uuid && t.to === 'Queued').length >= 2, 'two uncharged unlocks');
    expect(calls).toBeGreaterThanOrEqual(4);
    expect(s.fake.transitions.filter((t) => t.to === 'Cancelled')).toEqual([]);
    expect(String(s.fake.logs[0]?.properties?.text)).toMatch(/EMFILE; this dispatcher is out of resources, so container .* is unlocked for a later attempt/);
  });

  it('a crunch-run command that cannot be started stops locking: logged, unlocked once, not cycled', async () => {
    // maxJobs 1: one container is handed over before the error is known.
    const s = await setup({ runner: { crunchRunCommand: '/nonexistent/crunch-run' }, fake: { maxDispatchAttempts: 3 }, dispatcher: { maxJobs: 1 } });
    const paused: string[] = [];
    s.d.on('paused', (reason) => paused.push(reason));
    const cs = s.fake.addContainers(3, (i) => small({ priority: 3 - i }));
    await waitFor(() => s.fake.logs.length >= 1 && paused.length === 1 && s.d.status.tracked === 0, 'a dispatch log record, paused');
    expect(s.fake.logs[0]).toMatchObject({ object_uuid: cs[0].uuid, event_type: 'dispatch' });
    expect(String(s.fake.logs[0].properties?.text)).toMatch(
      new RegExp(`^Error running container ${cs[0].uuid}: error starting "/nonexistent/crunch-run" for ${cs[0].uuid}: .*ENOENT`),
    );
    expect(paused[0]).toMatch(/^environment error: error starting "\/nonexistent\/crunch-run"/);
    const cycles = s.d.status.cycles;
    await waitFor(() => s.d.status.cycles >= cycles + 5, 'five more cycles');
    // Unlocked, not cancelled, and nothing else was locked.
    expect(cs.map((c) => stateOf(s, c.uuid))).toEqual(['Queued', 'Queued', 'Queued']);
    expect(s.fake.count('containers.lock')).toBe(1);
    expect(s.of('started')).toEqual([]);
    expect(s.runner.pool.available.vcpus).toBe(4);
  });
});

describe('LocalRunner: a crunch-run that exits leaving its container Locked', () => {
  it('leaves a logs record and a warning with the exit code and the redacted tail of its stderr, and backs off', async () => {
    // A crunch-run that prints its token (as a careless debug line might) and exits 7 at once.
    const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-failing-'));
    const command = join(dir, 'crunch-run');
    writeFileSync(command, `#!${process.execPath}\nconsole.error('debug: token ' + process.env.ARVADOS_API_TOKEN);\nconsole.error('cannot mount keep');\nprocess.exit(7);\n`);
    chmodSync(command, 0o755);
    try {
      const s = await setup({ runner: { crunchRunCommand: command }, fake: { maxDispatchAttempts: 100 }, dispatcher: { failureBackoff: { initial: 200, max: 60_000 } } });
      const c = s.fake.addContainer(small());
      await waitFor(() => s.fake.logs.length >= 1 && s.warnings.length >= 1, 'a dispatch log and a warning');
      const text = String(s.fake.logs[0].properties.text);
      expect(text).toMatch(/^crunch-run exited with code 7 without finalizing the container\nlast lines of crunch-run's stderr:\ndebug: token .*\*\*\*\ncannot mount keep$/);
      expect(s.warnings[0]).toContain(`unlocked container ${c.uuid}: crunch-run exited with code 7`);
      expect(s.warnings[0]).toContain('cannot mount keep');
      const secret = s.fake.rootToken.token.split('/').at(-1)!;
      for (const out of [text, ...s.warnings, ...s.of('output').map((e) => e.line)]) {
        for (let i = 0; i + 8 <= secret.length; i++) expect(out).not.toContain(secret.slice(i, i + 8));
      }
      // Backoff 200, 400, 800 ms ...: over 60 polls of 25 ms, a handful of attempts, not one per poll.
      const cycles = s.d.status.cycles;
      await waitFor(() => s.d.status.cycles >= cycles + 60, '60 more cycles');
      const locks = s.fake.count('containers.lock');
      expect(locks).toBeGreaterThanOrEqual(2);
      expect(locks).toBeLessThanOrEqual(6);
      expect(stateOf(s, c.uuid)).not.toBe('Cancelled');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('LocalRunner as the Dispatcher\'s runner', () => {
  it('locks only what the pool can start; says why a container waits and which pid runs one', async () => {
    const s = await setup({
      mode: 'wait-release',
      runner: { capacity: { vcpus: 2, ram: 8 * GiB, gpus: { stack: '', ids: [] } } },
      asRunner: true,
    });
    const cs = s.fake.addContainers(3, (i) => small({ priority: 3 - i, runtime_constraints: { vcpus: 2, ram: 256 * MiB } }));
    await waitFor(() => stateOf(s, cs[0].uuid) === 'Running', 'the first Running');
    const cycles = s.d.status.cycles;
    await waitFor(() => s.d.status.cycles >= cycles + 3, 'three more cycles');
    expect(s.fake.count('containers.lock')).toBe(1);
    expect(cs.map((c) => stateOf(s, c.uuid))).toEqual(['Running', 'Queued', 'Queued']);
    const pid = s.of('started')[0].pid;
    expect(s.d.entries().map((e) => e.scheduling_status)).toEqual([
      `running (pid ${pid})`,
      'waiting: the runner has no free capacity',
      'waiting: the runner has no free capacity',
    ]);
    for (const c of cs) s.stub.release(c.uuid);
    await waitFor(() => cs.every((c) => stateOf(s, c.uuid) === 'Complete'), 'all Complete');
  });

  it('reports what a waiting container needs and what is free', async () => {
    const s = await setup({ mode: 'wait-release', runner: { capacity: { vcpus: 4, ram: 8 * GiB, gpus: { stack: '', ids: [] } } } });
    const first = s.fake.addContainer(small({ priority: 2, runtime_constraints: { vcpus: 3, ram: 256 * MiB } }));
    const big = s.fake.addContainer(small({ priority: 1, runtime_constraints: { vcpus: 4, ram: 256 * MiB } }));
    await waitFor(() => s.of('waiting', big.uuid).length === 1, 'big waiting');
    expect(s.runner.schedulingStatus(big.uuid)).toBe('waiting for resources: needs 4 vCPUs, 1 free');
    expect(s.of('waiting', big.uuid)[0].message).toBe('waiting for resources: needs 4 vCPUs, 1 free');
    expect(s.runner.capacity()).toBe(0);
    s.stub.release(first.uuid);
    s.stub.release(big.uuid);
    await waitFor(() => stateOf(s, big.uuid) === 'Complete', 'big Complete');
    await waitFor(() => s.runner.schedulingStatus(big.uuid) === undefined, 'big no longer held');
  });

  it('is closed by the Dispatcher when it stops: every crunch-run has exited when run() resolves', async () => {
    const s = await setup({ mode: 'hang', asRunner: true });
    const cs = s.fake.addContainers(2, () => small());
    await waitFor(() => cs.every((c) => stateOf(s, c.uuid) === 'Running'), 'all Running');
    const pids = cs.map((c) => s.stub.record(c.uuid)!.pid);
    await s.d.stop();
    expect(pids.filter(alive)).toEqual([]);
    expect(s.runner.running).toBe(0);
  });
});

describe('LocalRunner: options', () => {
  it('refuses bad options', () => {
    expect(() => new LocalRunner({ crunchRunCommand: '' })).toThrow(/crunchRunCommand/);
    expect(() => new LocalRunner({ runtimeEngine: 'docker; rm -rf /' })).toThrow(/runtimeEngine/);
    expect(() => new LocalRunner({ stopGrace: -1 })).toThrow(/stopGrace/);
    expect(() => new LocalRunner({ crunchRunArgs: [1 as unknown as string] })).toThrow(/crunchRunArgs/);
  });

  it('builds the command without a shell and refuses a bad UUID', () => {
    const r = new LocalRunner({ crunchRunArgs: ['--x'], runtimeEngine: 'singularity', processEnv: { PATH: '/bin', HOME: '/h' } });
    const creds = { ARVADOS_API_HOST: 'h:1', ARVADOS_API_TOKEN: 't', ARVADOS_API_HOST_INSECURE: '0' };
    expect(r.commandFor('zzzzz-dz642-012345678901234', creds)).toEqual({
      argv: ['crunch-run', '--x', '--runtime-engine=singularity', 'zzzzz-dz642-012345678901234'],
      env: { PATH: '/bin', ...creds },
    });
    expect(() => r.commandFor('zzzzz-dz642-0123; rm -rf', creds)).toThrow(/not a container UUID/);
  });
});

describe('LocalRunner: instance types', () => {
  const types = [
    { name: 'small', vcpus: 2, ram: 4 * GiB, scratch: 100 * GiB, price: 0.1, preemptible: false },
    { name: 'large', vcpus: 4, ram: 16 * GiB, scratch: 100 * GiB, price: 0.4, preemptible: false },
  ];

  it('cancels before starting a container no configured type can hold, naming the types considered', async () => {
    const s = await setup({ runner: { instanceTypes: types, instanceTypeRules: { localKeepBlobBuffersPerVCPU: 0 } } });
    const c = s.fake.addContainer(small({ runtime_constraints: { vcpus: 3, ram: 32 * GiB } }));
    const ok = s.fake.addContainer(small());
    await waitFor(() => stateOf(s, c.uuid) === 'Cancelled', 'Cancelled');
    expect(String(s.fake.container(c.uuid)?.runtime_status?.error)).toMatch(/^constraints not satisfiable by any configured instance type \(needs 3 VCPUs/);
    const log = s.fake.logs.filter((l) => l.object_uuid === c.uuid).map((l) => String(l.properties.text)).join('\n');
    expect(log).toContain('instance types considered');
    expect(log).toMatch(/small \(2 VCPUs, 4096 MiB RAM[^\n]*\n[^\n]*large \(4 VCPUs, 16384 MiB RAM/);
    expect(s.stub.record(c.uuid)).toBeUndefined();
    expect(s.fake.runCount(c.uuid)).toBe(0);
    await waitFor(() => stateOf(s, ok.uuid) === 'Complete', 'the other one Complete');
    expect(s.runner.instanceTypes(s.fake.container(ok.uuid)!).map((t) => t.Name)).toEqual(['small']);
  });
});

describe('LocalRunner: a crunch-run a previous dispatcher on this host started', () => {
  it('is followed, neither started again nor cancelled, when its container is adopted', async () => {
    const other = makeCrunchRunStub();
    let child: ChildProcess | undefined;
    let uuid = '';
    try {
      const s = await setup({
        containers: (fake) => {
          const c = fake.addContainer(small({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid }));
          uuid = c.uuid;
          // As a killed dispatcher leaves it: detached, alive, talking to the API.
          child = spawn(other.command, ['--mode=complete', '--work=1500', other.recordArg, c.uuid], {
            detached: true,
            stdio: 'ignore',
            env: { ...process.env, ...fake.env() },
          });
        },
      });
      await waitFor(() => stateOf(s, uuid) === 'Complete', 'Complete', 30_000);
      expect(s.fake.runCount(uuid)).toBe(1);
      expect(other.record(uuid)).toBeDefined();
      // Our runner started none.
      expect(s.stub.record(uuid)).toBeUndefined();
      expect(s.of('started', uuid)).toEqual([]);
      await waitFor(() => s.of('finished', uuid).length === 1, 'finished');
      expect(s.of('finished', uuid)).toMatchObject([{ state: 'Complete' }]);
    } finally {
      if (child?.pid && child.exitCode === null) child.kill('SIGKILL');
      other.remove();
    }
  });
});
