// systemd's notification protocol over a real unix datagram socket: the
// notifier on its own (READY=1, STOPPING=1, watchdog pings, what it says
// when it cannot work), then the built binary started as a Type=notify
// unit would start it, from a cluster config with no ManagementToken.
// The CLI tests need `npm run build` first (`npm test` does it).
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { stringify } from 'yaml';
import { SystemdNotifier } from '../../src/cli/systemd.js';
import { FakeArvados } from '../../src/testing/index.js';
import { alive, makeCrunchRunStub, type CrunchRunStub } from '../fixtures/crunch-run-stub.js';
import { built, spawnCli, type Cli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

interface Listener {
  bind(path: string): void;
  on(event: 'message', f: (buf: Buffer) => void): void;
  on(event: 'error', f: (err: Error) => void): void;
  close(): void;
}
const dgram = createRequire(import.meta.url)('unix-dgram') as { createSocket(type: 'unix_dgram'): Listener };

let dir: string;
let listener: Listener | undefined;
let messages: string[] = [];
const running: ChildProcess[] = [];
let fake: FakeArvados | undefined;
let stub: CrunchRunStub | undefined;

/** A bound unix datagram socket, as systemd's notify socket; what it receives goes to `messages`. */
function listen(): string {
  const path = join(dir, 'notify.sock');
  listener = dgram.createSocket('unix_dgram');
  listener.on('message', (buf) => messages.push(buf.toString('utf8')));
  listener.on('error', (err) => messages.push(`error: ${err.message}`));
  listener.bind(path);
  return path;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-systemd-'));
  messages = [];
});

afterEach(async () => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const r of stub?.records() ?? []) if (alive(r.pid)) process.kill(r.pid, 'SIGKILL');
  stub?.remove();
  stub = undefined;
  await fake?.stop();
  fake = undefined;
  listener?.close();
  listener = undefined;
  jest.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

describe('SystemdNotifier', () => {
  it('sends READY=1 then STOPPING=1 to NOTIFY_SOCKET, each once', async () => {
    const n = new SystemdNotifier({ env: { NOTIFY_SOCKET: listen() } });
    expect(n.enabled).toBe(true);
    n.stopping(); // before READY: nothing, and it ends the notifier
    const m = new SystemdNotifier({ env: { NOTIFY_SOCKET: n.socket } });
    m.ready();
    m.ready();
    m.stopping();
    m.stopping();
    await m.close();
    await waitFor(() => messages.length >= 2, 'two messages');
    expect(messages).toEqual(['READY=1', 'STOPPING=1']);
  });

  it('pings the watchdog every half WATCHDOG_USEC while healthy, and not while unhealthy', async () => {
    jest.useFakeTimers();
    const sent: string[] = [];
    let healthy = true;
    const n = new SystemdNotifier({ env: { NOTIFY_SOCKET: '/run/x.sock', WATCHDOG_USEC: '2000000' }, send: async (_p, b) => void sent.push(b.toString()) });
    expect(n.watchdogInterval).toBe(1000);
    n.ready(() => healthy);
    jest.advanceTimersByTime(3000);
    expect(sent).toEqual(['READY=1', 'WATCHDOG=1', 'WATCHDOG=1', 'WATCHDOG=1']);
    healthy = false;
    jest.advanceTimersByTime(3000);
    expect(sent).toHaveLength(4);
    n.stopping();
    jest.advanceTimersByTime(3000);
    expect(sent).toEqual(['READY=1', 'WATCHDOG=1', 'WATCHDOG=1', 'WATCHDOG=1', 'STOPPING=1']);
  });

  it('no watchdog for another WATCHDOG_PID; nothing at all without NOTIFY_SOCKET', () => {
    const send = async (): Promise<void> => {};
    expect(new SystemdNotifier({ env: { NOTIFY_SOCKET: '/run/x.sock', WATCHDOG_USEC: '2000000', WATCHDOG_PID: '1' }, send }).watchdogInterval).toBeUndefined();
    const off = new SystemdNotifier({ env: {}, send });
    expect(off.enabled).toBe(false);
    off.ready();
    off.stopping();
  });

  it('says once, as a warning, why systemd will not hear it', async () => {
    const warnings: string[] = [];
    new SystemdNotifier({ env: { NOTIFY_SOCKET: '@abstract' }, warn: (m) => warnings.push(m) });
    expect(warnings).toEqual([expect.stringMatching(/abstract socket, which is not supported/)]);
    const n = new SystemdNotifier({ env: { NOTIFY_SOCKET: join(dir, 'nobody-listens.sock') }, warn: (m) => warnings.push(m) });
    n.ready();
    n.stopping();
    await n.close();
    expect(warnings.slice(1)).toEqual([expect.stringMatching(/^cannot notify systemd on .*nobody-listens\.sock: /)]);
  });
});

const describeBuilt = built ? describe : describe.skip;

describeBuilt('arvados-dispatch under a Type=notify unit', () => {
  function cli(args: string[], env: Record<string, string>): Cli {
    const c = spawnCli(args, { HOME: dir, ...env });
    running.push(c.child);
    return c;
  }

  it('an InternalURL without ManagementToken starts: READY=1 once identified and listening, 404 "disabled", STOPPING=1 on SIGTERM', async () => {
    fake = await new FakeArvados().start();
    stub = makeCrunchRunStub();
    const config = join(dir, 'config.yml');
    // What a Go dispatcher starts with: InternalURLs, no ManagementToken; the crunch-run stub stands in for crunch-run.
    writeFileSync(
      config,
      stringify({
        Clusters: {
          zzzzz: {
            SystemRootToken: fake.rootToken.token,
            ManagementToken: '',
            Services: { Controller: { ExternalURL: fake.url } },
            TLS: { Insecure: true },
            Containers: { CrunchRunCommand: stub.command, CrunchRunArgumentsList: ['--mode=complete', stub.recordArg], CloudVMs: { PollInterval: '50ms' } },
          },
        },
      }),
    );
    const x = fake.addContainer({ priority: 1, runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 } });
    const socket = listen();
    const c = cli(['local', '--config', config, '--listen', '127.0.0.1:0', '--vcpus', '2', '--ram', '4GiB'], { NOTIFY_SOCKET: socket });
    await waitFor(() => messages.includes('READY=1'), 'READY=1');
    // Ready means: the token was identified and the listener is up.
    expect(fake.count('current')).toBeGreaterThanOrEqual(1);
    const base = /management API on (http:\/\/\S+)\/ \(disabled/.exec(c.stdout())?.[1];
    expect(base).toBeDefined();
    const r = await fetch(`${base}/_health/ping`, { headers: { Authorization: 'Bearer anything' } });
    expect([r.status, await r.text()]).toEqual([404, 'disabled\n']);
    await waitFor(() => fake!.container(x.uuid)?.state === 'Complete', 'the container ran');
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
    await waitFor(() => messages.includes('STOPPING=1'), 'STOPPING=1');
    expect(messages).toEqual(['READY=1', 'STOPPING=1']);
    expect(c.stderr()).toBe('');
  });

  it('a rejected token: no READY=1, exit 1', async () => {
    fake = await new FakeArvados().start();
    stub = makeCrunchRunStub();
    const socket = listen();
    const c = cli(['local', '--crunch-run-command', stub.command], {
      NOTIFY_SOCKET: socket,
      ARVADOS_API_HOST: fake.apiHost,
      ARVADOS_API_TOKEN: 'v2/zzzzz-gj3su-000000000000999/nosuchtoken',
      ARVADOS_API_HOST_INSECURE: '1',
    });
    expect((await c.exited).code).toBe(1);
    expect(messages).toEqual([]);
  });
});
