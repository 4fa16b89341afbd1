// The crunch-run simulator as the real child process a runner starts:
// `node dist/testing/crunch-run-sim.js [--mode=...] <uuid>` against
// FakeArvados, credentials from the environment only. Needs `npm run build`.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeArvados, crunchRunSimPath, type CrunchRunSimRecord } from '../../src/testing/index.js';
import type { Container } from '../../src/types.js';
import { waitFor } from '../helpers/wait.js';

const built = existsSync(crunchRunSimPath);
const d = built ? describe : describe.skip;

interface Sim {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

d('crunch-run simulator', () => {
  let fake: FakeArvados;
  let dir: string;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    fake = await new FakeArvados().start();
  });
  afterAll(() => fake.stop());
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'crunch-run-sim-test-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  const locked = (attrs: Partial<Container> = {}): Container =>
    fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid, ...attrs });

  function sim(args: string[], env: Record<string, string> = fake.env()): Sim {
    const child = spawn(process.execPath, [crunchRunSimPath, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    return { child, stdout: () => out, stderr: () => err, exited };
  }

  it('complete: Running, then Complete with exit code 0, output and log; unknown arguments are ignored', async () => {
    const c = locked();
    const s = sim(['--runtime-engine=docker', '--mode=complete', '--work=10', c.uuid]);
    expect(await s.exited).toBe(0);
    expect(fake.container(c.uuid)).toMatchObject({ state: 'Complete', exit_code: 0, output: expect.any(String), log: expect.any(String) });
    expect(s.stdout()).toBe(`fake crunch-run: ${c.uuid} is Running\nfake crunch-run: ${c.uuid} is Complete\n`);
    expect(fake.transitions.filter((t) => t.uuid === c.uuid).map((t) => t.to)).toEqual(['Running', 'Complete']);
  });

  it('fail: Complete with the exit code of --code (default 1)', async () => {
    const a = locked();
    const b = locked();
    expect(await sim(['--mode=fail', a.uuid]).exited).toBe(0);
    expect(await sim(['--mode=fail', '--code=7', b.uuid]).exited).toBe(0);
    expect(fake.container(a.uuid)).toMatchObject({ state: 'Complete', exit_code: 1 });
    expect(fake.container(b.uuid)).toMatchObject({ state: 'Complete', exit_code: 7 });
  });

  it('exit-locked exits with --code at once, leaving the container Locked; exit leaves it Running', async () => {
    const a = locked();
    const s = sim(['--mode=exit-locked', '--code=1', a.uuid]);
    expect(await s.exited).toBe(1);
    expect(fake.container(a.uuid)?.state).toBe('Locked');
    expect(s.stderr()).toBe(`fake crunch-run: exiting 1 before starting ${a.uuid}\n`);
    const b = locked();
    expect(await sim(['--mode=exit', b.uuid]).exited).toBe(3);
    expect(fake.container(b.uuid)?.state).toBe('Running');
  });

  it('hang: Running until SIGINT or SIGTERM, then Cancelled and exit 0; signals and argv/env recorded', async () => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const c = locked();
      const s = sim(['--mode=hang', `--record=${dir}`, c.uuid]);
      await fake.waitForState(c.uuid, 'Running');
      s.child.kill(sig);
      expect(await s.exited).toBe(0);
      expect(fake.container(c.uuid)?.state).toBe('Cancelled');
      expect(readFileSync(join(dir, `${c.uuid}.signals`), 'utf8')).toBe(`${sig}\n`);
      const rec = JSON.parse(readFileSync(join(dir, `${c.uuid}.json`), 'utf8')) as CrunchRunSimRecord;
      expect(rec.argv).toEqual([crunchRunSimPath, '--mode=hang', `--record=${dir}`, c.uuid]);
      expect(rec.envKeys).toEqual(['ARVADOS_API_HOST', 'ARVADOS_API_HOST_INSECURE', 'ARVADOS_API_TOKEN', 'PATH']);
      expect(rec.pid).toBe(s.child.pid);
    }
  });

  it('mute: on SIGTERM exits 143 at once without telling the API; stubborn ignores SIGINT and SIGTERM', async () => {
    const a = locked();
    const m = sim(['--mode=mute', a.uuid]);
    await fake.waitForState(a.uuid, 'Running');
    m.child.kill('SIGTERM');
    expect(await m.exited).toBe(143);
    expect(fake.container(a.uuid)?.state).toBe('Running');

    const b = locked();
    const st = sim(['--mode=stubborn', `--record=${dir}`, b.uuid]);
    await fake.waitForState(b.uuid, 'Running');
    st.child.kill('SIGINT');
    await waitFor(() => existsSync(join(dir, `${b.uuid}.signals`)), 'SIGINT recorded');
    st.child.kill('SIGTERM');
    await waitFor(() => readFileSync(join(dir, `${b.uuid}.signals`), 'utf8') === 'SIGINT\nSIGTERM\n', 'SIGTERM recorded');
    expect(st.child.exitCode).toBeNull();
    st.child.kill('SIGKILL');
    await st.exited;
    expect(fake.container(b.uuid)?.state).toBe('Running');
  });

  it('release: Complete once <record>/<uuid>.release exists', async () => {
    const c = locked();
    const s = sim(['--mode=wait-release', `--record=${dir}`, c.uuid]);
    await fake.waitForState(c.uuid, 'Running');
    expect(fake.container(c.uuid)?.state).toBe('Running');
    writeFileSync(join(dir, `${c.uuid}.release`), '');
    expect(await s.exited).toBe(0);
    expect(fake.container(c.uuid)?.state).toBe('Complete');
  });

  it('takes the mode from the environment, else from the container record (which also gives `sleep N` as the work)', async () => {
    const a = locked();
    expect(await sim([a.uuid], { ...fake.env(), CRUNCH_RUN_SIM_MODE: 'fail', CRUNCH_RUN_SIM_CODE: '4' }).exited).toBe(0);
    expect(fake.container(a.uuid)).toMatchObject({ state: 'Complete', exit_code: 4 });

    const b = locked({ environment: { CRUNCH_RUN_SIM_MODE: 'exit-locked', CRUNCH_RUN_SIM_CODE: '5' } });
    expect(await sim([b.uuid]).exited).toBe(5);
    expect(fake.container(b.uuid)?.state).toBe('Locked');

    // `sleep 60` would outlive the test: the work really comes from the command.
    const c = locked({ command: ['sleep', '60'] });
    const s = sim([c.uuid]);
    await fake.waitForState(c.uuid, 'Running');
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    expect(fake.container(c.uuid)?.state).toBe('Cancelled');
  });

  it('leak-token prints the token in every shape a dispatcher must mask, then completes', async () => {
    const c = locked();
    const s = sim(['--mode=leak-token', c.uuid]);
    expect(await s.exited).toBe(0);
    const token = fake.rootToken.token;
    const all = s.stdout() + s.stderr();
    expect(s.stdout()).toContain(`leaking the token: ${token}\n`);
    expect(s.stderr()).toContain(`Authorization: Bearer ${token}\n`);
    expect(s.stdout()).toContain(`/${token}\n`);
    expect(s.stdout()).toContain(`split: ${token}\n`);
    const long = s.stderr().split('\n').find((l) => l.length > 16 * 1024)!;
    const at = long.indexOf(token);
    expect(at).toBeLessThan(16 * 1024);
    expect(at + token.length).toBeGreaterThan(16 * 1024);
    expect(all).toContain(`fake crunch-run: ${c.uuid} is Complete`);
    expect(fake.container(c.uuid)?.state).toBe('Complete');
  });

  it('refuses a missing credential or a bad uuid with one line and exit 2, and never prints the token in its errors', async () => {
    const c = locked();
    const noToken = sim([c.uuid], { ARVADOS_API_HOST: fake.apiHost });
    expect(await noToken.exited).toBe(2);
    expect(noToken.stderr()).toBe(`fake crunch-run: ${c.uuid}: ARVADOS_API_HOST and ARVADOS_API_TOKEN must be set\n`);
    const bad = sim(['--mode=complete', 'not-a-uuid']);
    expect(await bad.exited).toBe(2);
    expect(bad.stderr()).toMatch(/not a container UUID: "not-a-uuid"\n$/);
    // A proxy page that echoes the request: the simulator shows the status, never the page.
    fake.setFaults({ rate: 1, kinds: ['echo-headers'], routes: ['containers.update'] });
    try {
      const s = sim(['--mode=complete', c.uuid]);
      expect(await s.exited).toBe(1);
      expect(s.stderr()).toBe(`fake crunch-run: ${c.uuid}: PUT ${c.uuid}: HTTP 502\n`);
    } finally {
      fake.setFaults(undefined);
    }
  });

  it('refuses a container that is not Locked or Running when it reads the record', async () => {
    const c = fake.addContainer();
    const s = sim([c.uuid]);
    expect(await s.exited).toBe(1);
    expect(s.stderr()).toBe(`fake crunch-run: ${c.uuid}: container is Queued, not Locked\n`);
  });
});
