/* eslint-disable @typescript-eslint/no-explicit-any -- the tests edit parsed YAML documents of any shape */
// `arvados-dispatch local` run as a service, as the built binary: settings
// from a cluster config only, the Go systemd unit's flags, the management
// listener (health, metrics, list, kill), and every startup check exiting 2
// with one line before anything is locked.
// Needs `npm run build` first (`npm test` does it).
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { parse, stringify } from 'yaml';
import { findExecutable } from '../../src/cli/which.js';
import { gatewayAuthSecret } from '../../src/runners/crunch-run.js';
import { FakeArvados } from '../../src/testing/index.js';
import { alive, makeCrunchRunStub, type CrunchRunStub } from '../fixtures/crunch-run-stub.js';
import { built, spawnCli, type Cli } from '../helpers/cli.js';
import { runInProcess } from '../helpers/in-process.js';
import { parseExposition, promtoolCheck } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait.js';

const describeBuilt = built ? describe : describe.skip;
/** promtool (Debian package prometheus), if on PATH: it checks a real scrape. */
const promtool = (() => {
  try {
    return findExecutable('promtool');
  } catch {
    return undefined;
  }
})();
const MGMT = 'mgmt-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ';
const small = { priority: 1, runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 } };

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

function cli(args: string[], env: Record<string, string> = {}): Cli {
  const c = spawnCli(args, { HOME: home, ...env });
  running.push(c.child);
  return c;
}

/** A cluster config, modelled on config.default.yml, pointing at `f` with its root token; `edit` changes the cluster. */
function clusterConfig(f: FakeArvados, edit: (c: Record<string, any>) => void = () => {}): string {
  const doc = parse(readFileSync(new URL('../fixtures/config/cluster.yml', import.meta.url), 'utf8')) as Record<string, any>;
  const c = doc.Clusters.zzzzz;
  c.SystemRootToken = f.rootToken.token;
  c.ManagementToken = MGMT;
  c.Services.Controller.ExternalURL = f.url;
  c.TLS.Insecure = true;
  c.Containers.CrunchRunCommand = stub!.command;
  c.Containers.CrunchRunArgumentsList = ['--mode=hang', stub!.recordArg];
  c.Containers.RuntimeEngine = 'docker';
  c.Containers.CloudVMs.PollInterval = '50ms';
  edit(c);
  const path = join(home, 'config.yml');
  writeFileSync(path, stringify(doc));
  return path;
}

async function http(base: string, path: string, init: RequestInit = {}): Promise<{ status: number; body: string }> {
  const res = await fetch(`${base}${path}`, { ...init, headers: { Authorization: `Bearer ${MGMT}` } });
  return { status: res.status, body: await res.text() };
}

/** The management API's base URL, from the `listening` event. */
async function listening(c: Cli): Promise<string> {
  const m = await waitFor(() => /management API on (http:\/\/\S+)\//.exec(c.stdout()), 'the listening line');
  return m![1];
}

describeBuilt('arvados-dispatch local as a service', () => {
  it('runs from the cluster config alone and serves health, metrics, the container list and kill', async () => {
    fake = await new FakeArvados().start();
    stub = makeCrunchRunStub();
    const config = clusterConfig(fake);
    const cs = fake.addContainers(2, () => small);
    const startedAt = Date.now();
    // No ARVADOS_* variables: the API host, token and TLS setting come from the config.
    // A long stop grace: a kill must signal crunch-run at once, not after it.
    const c = cli(
      ['local', '--config', config, '--listen', '127.0.0.1:0', '--vcpus', '4', '--ram', '8GiB', '--stop-grace', '5m', '--env', 'SITE=a=b', '--env-pass', 'HTTPS_PROXY'],
      { HTTPS_PROXY: 'http://proxy:3128' },
    );
    const base = await listening(c);
    await waitFor(() => cs.every((x) => fake!.container(x.uuid)?.state === 'Running'), 'both Running');

    expect(JSON.parse((await http(base, '/_health/ping')).body)).toEqual({ health: 'OK' });
    const metrics = await waitFor(async () => {
      const m = parseExposition((await http(base, '/metrics')).body);
      return m.value('arvados_dispatch_containers_running') === 2 && m;
    }, 'two running in the metrics');
    expect(metrics.value('arvados_dispatch_lock_requests_total', { result: 'ok' })).toBe(2);
    // What every Arvados service exports about its version and its config file.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(metrics.value('arvados_version_running', { version: pkg.version })).toBe(1);
    const sha256 = createHash('sha256').update(readFileSync(config)).digest('hex');
    expect(metrics.samples.filter((x) => x.name === 'arvados_config_source_timestamp_seconds')).toEqual([
      { name: 'arvados_config_source_timestamp_seconds', labels: { sha256 }, value: statSync(config).mtimeMs / 1000 },
    ]);
    const loaded = metrics.value('arvados_config_load_timestamp_seconds')!;
    expect(loaded * 1000).toBeGreaterThanOrEqual(startedAt);
    expect(loaded * 1000).toBeLessThanOrEqual(Date.now());

    // One that does not fit beside them waits, and says why.
    const big = fake.addContainer({ priority: 1, runtime_constraints: { vcpus: 3, ram: 64 * 2 ** 20 } });
    const list = await waitFor(async () => {
      const l = JSON.parse((await http(base, '/arvados/v1/dispatch/containers')).body);
      return l.items.length === 3 && l;
    }, 'three listed');
    const status = Object.fromEntries(list.items.map((i: any) => [i.container.uuid, i.scheduling_status]));
    for (const x of cs) expect(status[x.uuid]).toMatch(/^running \(pid \d+\)$/);
    // Not locked while it cannot fit (no dispatch attempt charged); the sentence is the dispatcher's.
    expect(status[big.uuid]).toMatch(/^waiting/);
    expect(list.items.find((i: any) => i.container.uuid === big.uuid).container.state).toBe('Queued');
    const one = JSON.parse((await http(base, `/arvados/v1/dispatch/container?container_uuid=${big.uuid}`)).body);
    expect(one.scheduling_status).toBe(status[big.uuid]);

    const [victim, other] = cs;
    const kill = await http(base, `/arvados/v1/dispatch/containers/kill?container_uuid=${victim.uuid}&reason=operator`, { method: 'POST' });
    expect(kill.status).toBe(200);
    await waitFor(() => stub!.signals(victim.uuid).includes('SIGINT'), 'crunch-run told to stop at once');
    expect(fake.container(victim.uuid)?.state).toBe('Cancelled');
    expect(c.stdout()).toContain(`${victim.uuid} kill requested (via management API: operator): stopping its work now`);
    expect(c.stdout()).toMatch(new RegExp(`${victim.uuid} sent SIGINT to crunch-run pid \\d+: killed: via management API: operator`));
    expect(c.stdout()).toContain(`${victim.uuid} cancelled (it was Running)`);
    expect(fake.container(victim.uuid)?.runtime_status).toMatchObject({ error: 'via management API: operator' });
    expect(fake.container(other.uuid)?.state).toBe('Running');

    // The config's crunch-run settings reached crunch-run.
    const r = stub.record(other.uuid)!;
    expect(r.argv.slice(1)).toEqual([stub.command, '--mode=hang', stub.recordArg, '--runtime-engine=docker', other.uuid]);
    expect(r.env.ARVADOS_API_TOKEN).toBe(fake.rootToken.token);
    expect(r.env.SITE).toBe('a=b');
    expect(r.env.HTTPS_PROXY).toBe('http://proxy:3128');
    // Keyed by the config's SystemRootToken, so the controller can reach the container gateway.
    expect(r.env.GatewayAuthSecret).toBe(gatewayAuthSecret(fake.rootToken.token, other.uuid));

    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
    const printed = c.stdout() + c.stderr();
    expect(printed).not.toContain(fake.rootToken.token);
    expect(printed).not.toContain(MGMT);
  });

  it('counts every container that finished, whichever path saw it first, and /metrics passes promtool', async () => {
    fake = await new FakeArvados().start();
    stub = makeCrunchRunStub();
    const config = clusterConfig(fake, (c) => (c.Containers.CrunchRunArgumentsList = ['--mode=complete', stub!.recordArg]));
    const cs = fake.addContainers(5, () => small);
    const c = cli(['local', '--config', config, '--listen', '127.0.0.1:0', '--vcpus', '2', '--ram', '8GiB']);
    const base = await listening(c);
    await waitFor(() => cs.every((x) => fake!.container(x.uuid)?.state === 'Complete'), 'all five Complete');
    const text = await waitFor(async () => {
      const body = (await http(base, '/metrics')).body;
      return parseExposition(body).value('arvados_dispatch_jobs_finished_total', { reason: 'complete' }) === 5 && body;
    }, 'five finished in the metrics');
    expect(parseExposition(text).value('arvados_dispatch_jobs_finished_total', { reason: 'cancelled' }) ?? 0).toBe(0);
    if (promtool) {
      const check = await promtoolCheck(promtool, text);
      expect([check.status, check.output]).toEqual([0, '']);
    } else {
      console.warn('promtool is not on PATH (Debian package prometheus): /metrics was not checked with it');
    }
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
  });

  it("accepts the Go unit's flags: -config, -poll-interval=SECONDS, -crunch-run-command", async () => {
    fake = await new FakeArvados().start();
    stub = makeCrunchRunStub();
    const config = clusterConfig(fake, (c) => {
      c.Containers.CrunchRunCommand = '/nonexistent/crunch-run';
      c.Containers.CrunchRunArgumentsList = ['--mode=complete', stub!.recordArg];
    });
    const x = fake.addContainer(small);
    const c = cli(['local', `-config=${config}`, '-poll-interval=1', `-crunch-run-command=${stub.command}`, '-pprof', ':6060', '--vcpus', '2', '--ram', '4GiB']);
    await waitFor(() => fake!.container(x.uuid)?.state === 'Complete', 'Complete');
    expect(c.stdout()).toMatch(/every 1s$/m);
    expect(c.stderr()).toMatch(/warning: ignoring the Go dispatcher's -pprof/);
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
  });

  it('--max-jobs caps the containers in flight: the others are not locked at all', async () => {
    fake = await new FakeArvados().start();
    stub = makeCrunchRunStub();
    const config = clusterConfig(fake);
    const cs = fake.addContainers(3, () => small);
    const c = cli(['local', '--config', config, '--max-jobs', '1', '--vcpus', '4', '--ram', '8GiB', '--stop-grace', '100ms']);
    await waitFor(() => cs.some((x) => fake!.container(x.uuid)?.state === 'Running'), 'one Running');
    // Several polls later, still one: the other two were never locked (no dispatch attempt charged).
    const polls = fake.count('containers.list');
    await waitFor(() => fake!.count('containers.list') >= polls + 6, 'more polls');
    expect(cs.map((x) => fake!.container(x.uuid)?.state).sort()).toEqual(['Queued', 'Queued', 'Running']);
    expect(fake.count('containers.lock')).toBe(1);
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
  });

  describe('startup checks: exit 2 with one line, nothing locked', () => {
    const cases: Array<[string, (config: string, dir: string) => string[], RegExp, ((c: Record<string, any>) => void)?]> = [
      ['an ill-typed config key', (cfg) => ['--config', cfg], /Clusters\.zzzzz\.Containers\.MinRetryPeriod: invalid duration "soon"/, (c) => (c.Containers.MinRetryPeriod = 'soon')],
      ['an https listener without a certificate', (cfg) => ['--config', cfg, '--listen', 'https://127.0.0.1:0/'], /an https:\/\/ management address needs TLS\.Certificate in the cluster config/],
      ['a config naming the token but not the controller', (cfg) => ['--config', cfg], /Services\.Controller\.ExternalURL is not set \(the config sets SystemRootToken; set both\)/, (c) => (c.Services.Controller.ExternalURL = '')],
      ['a bad --listen', (cfg) => ['--config', cfg, '--listen', 'localhost'], /^arvados-dispatch: --listen: "localhost" is not HOST:PORT/],
      ['a missing token file', (cfg, dir) => ['--config', cfg, '--listen', ':0', '--management-token-file', join(dir, 'nope')], /--management-token-file: cannot read/],
      ['a bad --env', (cfg) => ['--config', cfg, '--env', 'NOVALUE'], /--env: "NOVALUE" is not NAME=VALUE/],
      ['a bad --max-jobs', (cfg) => ['--config', cfg, '--max-jobs', '0'], /--max-jobs: "0" is not a whole number >= 1/],
      ['a duration without a unit', (cfg) => ['--config', cfg, '--stop-grace', '5'], /--stop-grace: invalid duration "5": missing unit/],
      ['a bad size', (cfg) => ['--config', cfg, '--ram', 'lots'], /--ram: invalid size "lots"/],
      ['a missing crunch-run command', (cfg) => ['--config', cfg, '--crunch-run-command', '/nonexistent/crunch-run'], /crunch-run command "\/nonexistent\/crunch-run" does not exist/],
      ['a config file that does not exist', (_cfg, dir) => ['--config', join(dir, 'missing.yml')], /cannot read cluster config .*missing\.yml: no such file/],
      ['an unknown flag', (cfg) => ['--config', cfg, '--bogus'], /unknown option '--bogus'/],
    ];
    it.each(cases.map(([what, args, message, edit]) => ({ what, args, message, edit })))('$what', async ({ args, message, edit }) => {
      fake = await new FakeArvados().start();
      stub = makeCrunchRunStub();
      const config = clusterConfig(fake, edit);
      const x = fake.addContainer(small);
      // In-process: each ends before anything starts, as the spawned tests around show the process does.
      const { code, stderr } = await runInProcess(['local', ...args(config, home)], { HOME: home });
      expect(code).toBe(2);
      const lines = stderr.split('\n').filter(Boolean);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^arvados-dispatch: /);
      expect(lines[0]).toMatch(message);
      expect(fake.count('containers.lock')).toBe(0);
      expect(fake.container(x.uuid)?.state).toBe('Queued');
    });
  });

  it('an unresolvable API host and a refused connection each give one clear line at once', async () => {
    stub = makeCrunchRunStub();
    const nohost = await waitForExit(cli(['local', '--crunch-run-command', stub.command], { ARVADOS_API_HOST: 'no-such-host.invalid', ARVADOS_API_TOKEN: 'x' }));
    expect(nohost.code).toBe(1);
    expect(nohost.lines).toEqual(['arvados-dispatch: cannot resolve the API host name "no-such-host.invalid" (check ARVADOS_API_HOST or Services.Controller.ExternalURL)']);

    const port = await freePort();
    const refused = await waitForExit(cli(['local', '--crunch-run-command', stub.command], { ARVADOS_API_HOST: `127.0.0.1:${port}`, ARVADOS_API_TOKEN: 'x' }));
    expect(refused.code).toBe(1);
    expect(refused.lines).toEqual([`arvados-dispatch: cannot connect to the API server at 127.0.0.1:${port}: connection refused`]);
  });
});

async function waitForExit(c: Cli): Promise<{ code: number | null; lines: string[] }> {
  const { code } = await c.exited;
  return { code, lines: c.stderr().split('\n').filter(Boolean) };
}

/** A port nothing listens on (it was free a moment ago). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
