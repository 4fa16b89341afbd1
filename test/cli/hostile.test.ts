// The built `arvados-dispatch` binary under hostile answers: malformed list
// answers (null and junk items, hostile uuids, 200 answers carrying only
// errors) arrive while containers run under `local` with the crunch-run
// simulator, some of which print the token. Nothing is cancelled, the
// process stays up, everything completes, and no piece of the token is
// printed or stored. Also: every batch command refuses a bad template with
// exit 2 before it locks anything, with a live API at hand.
// Needs `npm run build` first (`npm test` does it).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { FakeArvados } from '../../src/testing/index.js';
import { alive, makeCrunchRunStub, type CrunchRunStub } from '../fixtures/crunch-run-stub.js';
import { fragmentsIn } from '../client/fragments.js';
import { built, runCli, spawnCli, type Cli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

const describeBuilt = built ? describe : describe.skip;
const LSF_BIN = fileURLToPath(new URL('../runners/lsf/bin', import.meta.url));
const LIST_FAULTS = ['null-item', 'malformed-items', 'hostile-uuid', 'errors-200'] as const;

const running: ChildProcess[] = [];
let home: string;
let fake: FakeArvados | undefined;
let stub: CrunchRunStub | undefined;

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'arvados-dispatch-home-'));
});

afterEach(async () => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const r of stub?.records() ?? []) if (alive(r.pid)) process.kill(r.pid, 'SIGKILL');
  await fake?.stop();
  fake = undefined;
  stub?.remove();
  stub = undefined;
  rmSync(home, { recursive: true, force: true });
});

function cli(args: string[], env: Record<string, string>): Cli {
  const c = spawnCli(args, { HOME: home, ...env });
  running.push(c.child);
  return c;
}

describeBuilt('arvados-dispatch local under hostile list answers', () => {
  it('malformed list answers while containers run: none is cancelled, the process stays up, all complete, no piece of the token shows', async () => {
    fake = await new FakeArvados({
      faults: { rate: 0.3, kinds: LIST_FAULTS, routes: ['containers.list'], seed: 140 },
    }).start();
    stub = makeCrunchRunStub();
    // Every third container's crunch-run prints the token in every shape it can.
    const cs = fake.addContainers(12, (i) => ({
      priority: 1 + (i % 3),
      runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 },
      environment: { CRUNCH_RUN_SIM_MODE: i % 3 === 0 ? 'leak-token' : 'complete', CRUNCH_RUN_SIM_WORK: '300' },
    }));
    const mine = new Set(cs.map((c) => c.uuid));
    const c = cli(
      ['local', '--poll-interval', '50ms', '--crunch-run-command', stub.command, `--crunch-run-arg=${stub.recordArg}`, '--vcpus', '4', '--ram', '8GiB'],
      fake.env(),
    );
    await waitFor(() => cs.every((x) => fake!.container(x.uuid)?.state === 'Complete') || c.child.exitCode !== null, 'all Complete', 90_000);
    expect(c.child.exitCode).toBeNull();
    expect(cs.map((x) => fake!.container(x.uuid)?.state)).toEqual(cs.map(() => 'Complete'));
    // The faults were really served while containers ran.
    const served = new Set(fake.requests.filter((r) => r.fault !== undefined).map((r) => r.fault));
    for (const k of LIST_FAULTS) expect(served).toContain(k);
    // Nothing cancelled, each run once, and crunch-run only ever for real uuids.
    expect(fake.transitions.filter((t) => t.to === 'Cancelled')).toEqual([]);
    for (const x of cs) expect(fake.runCount(x.uuid)).toBe(1);
    const started = stub.records().map((r) => r.argv.at(-1)!);
    expect(started.sort()).toEqual([...mine].sort());
    // The operator is told about the dropped items.
    expect(c.stderr()).toMatch(/left out (container zzzzz-dz642-\w{15}|an item \(\w+\) without a valid container uuid): not a valid container record/);

    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
    expect(c.stdout().trim().split('\n').at(-1)).toMatch(/done 12 \(complete 12, cancelled 0\)$/);
    // What leak-token printed came through, masked.
    expect(c.stdout()).toMatch(/\| .*\*\*\*/);
    const secret = fake.rootToken.token;
    const everything = [c.stdout(), c.stderr(), ...fake.logs.map((l) => JSON.stringify(l))].join('\n');
    expect(fragmentsIn(everything, secret)).toEqual([]);
  }, 120_000);
});

describeBuilt('batch commands refuse a bad template before any lock, with the API reachable', () => {
  const cases: Array<[string, string[], Record<string, string>]> = [
    ['slurm', ['slurm', '--sbatch-arg=--comment=%Z'], {}],
    ['lsf', ['lsf', '--bsub-arg=-J', '--bsub-arg=%P'], { PATH: `${LSF_BIN}:${process.env.PATH ?? ''}` }],
    ['sge', ['sge', '--qsub-arg=-l', '--qsub-arg=h_vmem=%XM'], {}],
  ];
  it.each(cases)('%s: exit 2, one line, nothing locked or even asked', async (_name, args, env) => {
    fake = await new FakeArvados().start();
    const x = fake.addContainer({ runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 } });
    const r = await runCli([...args, '--poll-interval', '50ms'], { HOME: home, ...fake.env(), ...env });
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^arvados-dispatch: .*(substitution|template)/);
    expect(fake.count('containers.lock')).toBe(0);
    expect(fake.count('containers.list')).toBe(0);
    expect(fake.container(x.uuid)?.state).toBe('Queued');
  });
});
