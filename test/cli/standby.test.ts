// Hot standby, end to end: two built `arvados-dispatch lsf` processes with
// one config (the cluster lock on a real PostgreSQL, scripts/postgres-up.sh),
// the test suite's LSF stand-in (jobs run detached, so they outlive the
// dispatcher), FakeArvados and the crunch-run simulator. The active one is
// killed with SIGKILL; the standby takes the lock and finishes the work:
// nothing submitted twice, nothing cancelled. Skipped, with a note, where
// PostgreSQL (its second database) does not answer.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { FakeArvados } from '../../src/testing/index.js';
import { built } from '../helpers/cli.js';
import { standbyPgUrl } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

// Its own database, so that cluster-lock.test.ts can hold the same lock key meanwhile.
const PG_URL = standbyPgUrl();
const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const LSF_BIN = fileURLToPath(new URL('../runners/lsf/bin', import.meta.url));
const STUB = fileURLToPath(new URL('../fixtures/slurm-crunch-run.mjs', import.meta.url));

async function available(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await c.end().catch(() => {});
  }
}
const unavailable = await available();
if (unavailable) console.warn(`SKIPPING the hot-standby test: PostgreSQL does not answer (${unavailable}). Run scripts/postgres-up.sh as root to enable it.`);
const describeIt = !unavailable && built ? describe : describe.skip;

interface Proc {
  child: ChildProcess;
  events: Array<Record<string, unknown>>;
  exited: Promise<unknown>;
}

describeIt('two dispatchers with one config (real PostgreSQL)', () => {
  let fake: FakeArvados;
  let dir: string;
  const procs: Proc[] = [];
  beforeAll(async () => {
    fake = await new FakeArvados().start();
    dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-standby-'));
  });
  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function dispatcher(config: string, table: string): Proc {
    const child = spawn(
      process.execPath,
      [MAIN, 'lsf', '--config', config, '--json', '--status-interval', '0', '--poll-interval', '200ms', '--bjobs-interval', '200ms', '--bsub-sudo-user', '', '--crunch-run-command', process.execPath, `--crunch-run-arg=${STUB}`],
      { env: { PATH: `${LSF_BIN}:${process.env.PATH ?? ''}`, HOME: dir, LSF_STUB_DIR: table, ...fake.env() }, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const p: Proc = { child, events: [], exited: new Promise((r) => child.on('exit', r)) };
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        p.events.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        buf = buf.slice(i + 1);
      }
    });
    procs.push(p);
    return p;
  }
  const lockState = (p: Proc): unknown => p.events.filter((e) => e.event === 'cluster-lock').at(-1)?.state;

  it('the standby takes over when the active one is killed, and adopts its jobs: none run twice, none lost or cancelled', async () => {
    const u = new URL(PG_URL);
    const config = join(dir, 'config.yml');
    writeFileSync(
      config,
      `Clusters:\n  zzzzz:\n    PostgreSQL:\n      Connection:\n        host: ${u.hostname}\n        port: "${u.port || 5432}"\n        user: ${decodeURIComponent(u.username)}\n        password: ${decodeURIComponent(u.password)}\n        dbname: ${u.pathname.slice(1)}\n        sslmode: disable\n`,
      { mode: 0o600 },
    );
    const table = join(dir, 'lsf');
    const a = dispatcher(config, table);
    await waitFor(() => lockState(a) === 'held', 'the first holding the lock', 30_000);
    const b = dispatcher(config, table);
    await waitFor(() => lockState(b) === 'waiting', 'the second waiting', 30_000);
    // Jobs outlast the takeover (seconds under load), so the standby finds them running and adopts them.
    const cs = Array.from({ length: 8 }, (_, i) =>
      fake.addContainer({ priority: 10 - i, runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 }, environment: { STUB_MODE: 'complete', STUB_RUN_MS: String(12000 + 200 * i) } }),
    );
    await waitFor(() => cs.filter((c) => fake.container(c.uuid)?.state === 'Running').length >= 4, 'four Running', 30_000);
    // Every container's job recorded before the kill: a bsub the killed one
    // left running could record a job after the standby looked, and the
    // standby would submit that container again (seen under load).
    const named = (): string[] =>
      readdirSync(join(table, 'jobs'))
        .filter((f) => f.endsWith('.json'))
        .map((f) => (JSON.parse(readFileSync(join(table, 'jobs', f), 'utf8')) as { name: string }).name);
    await waitFor(() => cs.every((c) => named().includes(c.uuid)), 'every container submitted', 30_000);
    expect(b.events.some((e) => e.event === 'locked' || e.event === 'submitted')).toBe(false);
    a.child.kill('SIGKILL');
    await a.exited;
    await waitFor(() => lockState(b) === 'held', 'the standby holding the lock', 20_000);
    await waitFor(() => cs.every((c) => fake.container(c.uuid)?.state === 'Complete'), 'all Complete', 60_000);
    const bsubs = readFileSync(join(table, 'calls.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { command: string; args: string[] })
      .filter((c) => c.command === 'bsub');
    for (const c of cs) {
      expect(bsubs.filter((x) => x.args.includes(c.uuid))).toHaveLength(1);
      expect(fake.runCount(c.uuid)).toBe(1);
    }
    // The standby adopted what the first had running, by job name.
    expect(b.events.filter((e) => e.event === 'adopted').length).toBeGreaterThan(0);
    b.child.kill('SIGTERM');
    await b.exited;
  }, 120_000);
});
