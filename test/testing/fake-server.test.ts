// `arvados-dispatch fake-server` as a real child process, driven only over
// HTTP as a test in another language would: one JSON line to connect, the
// admin token to create and change containers under the server's rules,
// the dispatcher token for a dispatcher, and a clean exit on SIGTERM; bad
// flags in-process. Needs `npm run build`.
import { afterEach, describe, expect, it } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { rawRequest, type RawRequest } from '../../src/testing/http.js';
import { crunchRunSimPath } from '../../src/testing/index.js';
import { built, spawnCli, type Cli } from '../helpers/cli.js';
import { runInProcess } from '../helpers/in-process.js';
import { waitFor } from '../helpers/wait.js';

const d = built ? describe : describe.skip;

interface ServerInfo {
  apiHost: string;
  insecure: boolean;
  dispatcherToken: string;
  adminToken: string;
  url: string;
  clusterId: string;
  caCertFile?: string;
  pid: number;
}

d('arvados-dispatch fake-server', () => {
  const running: Cli[] = [];
  afterEach(async () => {
    for (const c of running.splice(0)) {
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
      await c.exited;
    }
  });

  async function server(args: string[] = []): Promise<{ cli: Cli; info: ServerInfo }> {
    const cli = spawnCli(['fake-server', ...args], {});
    running.push(cli);
    const line = await waitFor(() => (cli.stdout().includes('\n') ? cli.stdout() : false), 'the JSON line', 30_000);
    expect(line.split('\n')).toHaveLength(2);
    return { cli, info: JSON.parse(line) as ServerInfo };
  }

  it('prints one JSON line, serves HTTPS its certificate file verifies, lets the admin create and change containers under the rules, and exits 0 on SIGTERM', async () => {
    const { cli, info } = await server();
    expect(info).toEqual({
      apiHost: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      insecure: true,
      dispatcherToken: expect.stringMatching(/^[0-9a-z]{20,}$/),
      adminToken: expect.stringMatching(/^[0-9a-z]{20,}$/),
      url: `https://${info.apiHost}`,
      clusterId: 'zzzzz',
      caCertFile: expect.any(String),
      pid: cli.child.pid,
    });
    expect(info.adminToken).not.toBe(info.dispatcherToken);
    const ca = readFileSync(info.caCertFile!, 'utf8');
    expect(new X509Certificate(ca).subjectAltName).toContain('IP Address:127.0.0.1');
    // Certificate verification on: the file is all a client needs to trust the server.
    const call = (req: Omit<RawRequest, 'base' | 'ca'>) => rawRequest({ ...req, base: info.apiHost, ca });

    const created = await call({ method: 'POST', path: '/arvados/v1/containers', token: info.adminToken, body: { container: { priority: 5, command: ['sleep', '0'] } } });
    expect(created.status).toBe(200);
    const uuid = created.json!.uuid as string;
    expect(created.json).toMatchObject({ state: 'Queued', priority: 5, lock_count: 0 });

    // The server's usual rules apply to the admin as to anyone.
    const bad = await call({ method: 'PUT', path: `/arvados/v1/containers/${uuid}`, token: info.adminToken, body: { container: { state: 'Running' } } });
    expect(bad.status).toBe(422);
    expect(String(bad.json?.errors)).toContain('State cannot change from Queued to Running');
    const unknown = await call({ method: 'POST', path: '/arvados/v1/containers', token: info.adminToken, body: { container: { no_such: 1 } } });
    expect(unknown.status).toBe(422);

    // A dispatcher (here: plain HTTP calls and the crunch-run simulator) with the dispatcher token.
    const me = await call({ method: 'GET', path: '/arvados/v1/api_client_authorizations/current', token: info.dispatcherToken });
    const lock = await call({ method: 'POST', path: `/arvados/v1/containers/${uuid}/lock`, token: info.dispatcherToken });
    expect(lock.json).toMatchObject({ state: 'Locked', locked_by_uuid: me.json!.uuid });
    const sim = await runCliNode([crunchRunSimPath, uuid], {
      ARVADOS_API_HOST: info.apiHost,
      ARVADOS_API_TOKEN: info.dispatcherToken,
      ARVADOS_API_HOST_INSECURE: info.insecure ? '1' : '0',
    });
    expect(sim).toBe(0);
    const got = await call({ method: 'GET', path: `/arvados/v1/containers/${uuid}`, token: info.adminToken });
    expect(got.json).toMatchObject({ state: 'Complete', exit_code: 0 });
    // The admin changes a container as a user's cancel would.
    const other = await call({ method: 'POST', path: '/arvados/v1/containers', token: info.adminToken, body: { container: { priority: 1 } } });
    const zero = await call({ method: 'PUT', path: `/arvados/v1/containers/${other.json!.uuid as string}`, token: info.adminToken, body: { container: { priority: 0 } } });
    expect(zero.json).toMatchObject({ priority: 0 });

    cli.child.kill('SIGTERM');
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(info.caCertFile!)).toBe(false);
    expect(cli.stderr()).toBe('');
  });

  it('--http --port N --cluster-id: plain HTTP on the given port, no certificate; SIGINT also stops it', async () => {
    const port = await freePort();
    const { cli, info } = await server(['--http', '--port', String(port), '--cluster-id', 'abcde']);
    expect(info).toMatchObject({ apiHost: `http://127.0.0.1:${port}`, insecure: false, clusterId: 'abcde' });
    expect(info).not.toHaveProperty('caCertFile');
    const created = await rawRequest({ base: info.apiHost, method: 'POST', path: '/arvados/v1/containers', token: info.adminToken, body: { container: {} } });
    expect(created.json?.uuid).toMatch(/^abcde-dz642-/);
    cli.child.kill('SIGINT');
    expect((await cli.exited).code).toBe(0);
  });

  it('--faults serves hostile answers from the start', async () => {
    const { info } = await server(['--faults', '{"rate":1,"kinds":["bad-identity"]}']);
    const me = await rawRequest({ base: info.apiHost, insecure: true, path: '/arvados/v1/api_client_authorizations/current', token: info.dispatcherToken });
    expect(me.status).toBe(200);
    expect(typeof me.json?.uuid === 'string' && /^zzzzz-gj3su-[0-9a-z]{15}$/.test(me.json.uuid)).toBe(false);
  });

  it('refuses bad flags with exit 2 and one line', async () => {
    for (const [args, msg] of [
      [['--port', 'x'], "arvados-dispatch: --port: \"x\" is not a whole number >= 0; see 'arvados-dispatch fake-server --help'\n"],
      [['--cluster-id', 'TOOLONG'], "arvados-dispatch: --cluster-id: \"TOOLONG\" is not 5 characters [0-9a-z]; see 'arvados-dispatch fake-server --help'\n"],
      [['--faults', '{"rate":1,"kinds":["nope"]}'], 'arvados-dispatch: --faults: unknown fault kind "nope"; see \'arvados-dispatch fake-server --help\'\n'],
      [['--faults', '{'], "arvados-dispatch: --faults: not JSON: {; see 'arvados-dispatch fake-server --help'\n"],
    ] as const) {
      const r = await runInProcess(['fake-server', ...args]);
      expect([r.code, r.stdout, r.stderr]).toEqual([2, '', msg]);
    }
  });
});

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Runs `node <args>` with exactly `env`; resolves to its exit code. */
async function runCliNode(args: string[], env: Record<string, string>): Promise<number | null> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: 'ignore' });
  return new Promise((resolve) => child.on('close', (code) => resolve(code)));
}
