// The cluster dispatch lock against a real PostgreSQL (scripts/postgres-up.sh):
// the ClusterLock itself, then the built CLI (`local` on FakeArvados with
// the crunch-run simulator) waiting for the lock, starting within one retry
// of its release, and holding back when its session is killed.
// Skipped, with a note, where PostgreSQL does not answer.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { ClusterLock, DISPATCH_LOCK_KEY, LOCK_RETRY_INTERVAL } from '../../src/cli/cluster-lock.js';
import type { PostgresConnection } from '../../src/cli/cluster-sections.js';
import { FakeArvados } from '../../src/testing/index.js';
import { built, spawnCli, type Cli } from '../helpers/cli.js';
import { TEST_PG_URL, standbyPgUrl } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const URL_TEXT = TEST_PG_URL;
const u = new URL(URL_TEXT);
const connection: PostgresConnection = {
  host: u.hostname,
  port: Number(u.port || 5432),
  user: decodeURIComponent(u.username),
  password: decodeURIComponent(u.password),
  dbname: u.pathname.slice(1),
  sslmode: 'disable',
};
const SIM = fileURLToPath(new URL('../../dist/testing/crunch-run-sim.js', import.meta.url));

async function available(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: URL_TEXT, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('select 1');
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await c.end().catch(() => {});
  }
}

const unavailable = await available();
if (unavailable) console.warn(`SKIPPING cluster-lock tests: PostgreSQL at ${u.host} does not answer (${unavailable}). Run scripts/postgres-up.sh as root to enable them.`);
const describePg = unavailable ? describe.skip : describe;

/** A test session (in this file's database unless `url` says otherwise): holds the lock as "another dispatcher". */
async function session(url = URL_TEXT): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  return c;
}

const clients: pg.Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => {})));
});

// pg_locks lists every database's locks; advisory locks are per database,
// and standby.test.ts takes the same key in another one meanwhile.
const THIS_DB = "database = (select oid from pg_database where datname = current_database())";

/** The backend pid holding the lock in this database, if one does. */
async function holderPid(c: pg.Client): Promise<number | undefined> {
  const r = await c.query<{ pid: number }>(`select pid from pg_locks where locktype = 'advisory' and objid = $1 and granted and ${THIS_DB}`, [DISPATCH_LOCK_KEY]);
  return r.rows[0]?.pid;
}

/** How many sessions wait for the lock in this database. */
async function waiters(c: pg.Client): Promise<number> {
  return (await c.query<{ n: number }>(`select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = $1 and not granted and ${THIS_DB}`, [DISPATCH_LOCK_KEY])).rows[0].n;
}

describePg('ClusterLock (real PostgreSQL)', () => {
  it('waits while another session holds 10005, takes it within one retry of its release, and reports a killed session at once', async () => {
    // Another cluster's dispatcher on the same server holds the same key in its own database (or
    // standby.test.ts does, meanwhile): the waiting line must name the holder in ours.
    const foreign = await session(standbyPgUrl());
    clients.push(foreign);
    await foreign.query('select pg_try_advisory_lock($1)', [DISPATCH_LOCK_KEY]);
    const other = await session();
    clients.push(other);
    expect((await other.query('select pg_try_advisory_lock($1) as ok', [DISPATCH_LOCK_KEY])).rows[0].ok).toBe(true);
    const otherPort = (await other.query<{ port: number }>('select inet_client_port() as port')).rows[0].port;
    const lock = new ClusterLock({ connection });
    const events: string[] = [];
    lock.on('waiting', () => events.push('waiting'));
    lock.on('held', () => events.push('held'));
    lock.on('lost', () => events.push('lost'));
    lock.start();
    try {
      await waitFor(() => lock.state === 'waiting', 'waiting');
      expect(lock.description).toMatch(/^waiting for the cluster dispatch lock \(held by another dispatcher/);
      expect(lock.description).toBe(`waiting for the cluster dispatch lock (held by another dispatcher at 127.0.0.1:${otherPort})`);
      const released = Date.now();
      await other.query('select pg_advisory_unlock($1)', [DISPATCH_LOCK_KEY]);
      await lock.acquired;
      expect(Date.now() - released).toBeLessThanOrEqual(LOCK_RETRY_INTERVAL + 2_000);
      expect(lock.held).toBe(true);

      // A waiter queued behind us gets the lock the moment our session ends, before we can try again.
      const pid = await holderPid(other);
      expect(pid).toBeDefined();
      const waiter = await session();
      clients.push(waiter);
      const waiting = waiter.query('select pg_advisory_lock($1)', [DISPATCH_LOCK_KEY]);
      await waitFor(async () => (await waiters(other)) === 1, 'the waiter queued');
      await other.query('select pg_terminate_backend($1)', [pid]);
      await waitFor(() => events.includes('lost'), 'lost reported');
      await waiting;
      await waitFor(() => lock.state === 'waiting', 'waiting again');
      expect(lock.held).toBe(false);
      await waiter.end();
      await waitFor(() => lock.held, 'held again', LOCK_RETRY_INTERVAL + 5_000);
      expect(events).toEqual(['waiting', 'held', 'lost', 'waiting', 'held']);
    } finally {
      await lock.close();
    }
    // Closing ends the session, which frees the lock: once PostgreSQL has ended the backend, which it does
    // asynchronously after the client's Terminate, so only soon after close() resolves.
    await waitFor(async () => (await holderPid(other)) === undefined, 'the lock released by closing', 10_000);
  }, 60_000);

  it('keeps trying while the database refuses the connection, and says why', async () => {
    const lock = new ClusterLock({ connection: { ...connection, password: 'wrong password' }, retryInterval: 50 });
    const errors: string[] = [];
    lock.on('error', (m) => errors.push(m));
    lock.start();
    try {
      await waitFor(() => errors.length > 0, 'an error');
      expect(errors[0]).toMatch(/password authentication failed/);
      expect(errors.join('\n')).not.toContain('wrong password');
      expect(lock.held).toBe(false);
    } finally {
      await lock.close();
    }
    await expect(lock.acquired).rejects.toThrow(/closed before it was acquired/);
  });
});

const describeCli = !unavailable && built ? describe : describe.skip;

describeCli('arvados-dispatch local with PostgreSQL.Connection (real PostgreSQL)', () => {
  let fake: FakeArvados;
  let dir: string;
  let cli: Cli | undefined;
  beforeAll(async () => {
    fake = await new FakeArvados().start();
    dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-lock-'));
  });
  afterAll(async () => {
    if (cli && cli.child.exitCode === null) cli.child.kill('SIGKILL');
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('dispatches nothing until the lock is ours, and holds back new containers while its lock session is gone', async () => {
    const config = join(dir, 'config.yml');
    writeFileSync(
      config,
      `Clusters:\n  zzzzz:\n    PostgreSQL:\n      Connection:\n        host: ${connection.host}\n        port: "${connection.port}"\n        user: ${connection.user}\n        password: ${connection.password}\n        dbname: ${connection.dbname}\n        sslmode: disable\n`,
      { mode: 0o600 },
    );
    const other = await session();
    clients.push(other);
    expect((await other.query('select pg_try_advisory_lock($1) as ok', [DISPATCH_LOCK_KEY])).rows[0].ok).toBe(true);
    const small = { priority: 1, runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 } };
    const first = fake.addContainer({ ...small, environment: { CRUNCH_RUN_SIM_MODE: 'hang' } });
    cli = spawnCli(
      ['local', '--config', config, '--poll-interval', '50ms', '--status-interval', '200ms', '--crunch-run-command', process.execPath, `--crunch-run-arg=${SIM}`, '--vcpus', '4', '--ram', '8GiB'],
      { HOME: dir, ...fake.env() },
    );
    const c = cli;
    await waitFor(() => /waiting for the cluster dispatch lock on .*held by another dispatcher/.test(c.stdout()), 'the waiting line', 20_000);
    await waitFor(() => /not locking: waiting for the cluster dispatch lock/.test(c.stdout()), 'a status line saying so', 20_000);
    expect(fake.container(first.uuid)?.state).toBe('Queued');
    expect(fake.count('containers.lock')).toBe(0);

    const released = Date.now();
    await other.query('select pg_advisory_unlock($1)', [DISPATCH_LOCK_KEY]);
    await waitFor(() => fake.container(first.uuid)?.state === 'Running', 'the first container running', 20_000);
    expect(Date.now() - released).toBeLessThanOrEqual(LOCK_RETRY_INTERVAL + 5_000);
    expect(c.stdout()).toMatch(/holding the cluster dispatch lock on .*: dispatching/);

    // Another dispatcher queues for the lock; our session is killed; it gets the lock.
    const pid = await holderPid(other);
    expect(pid).toBeDefined();
    const waiter = await session();
    clients.push(waiter);
    const waiting = waiter.query('select pg_advisory_lock($1)', [DISPATCH_LOCK_KEY]);
    await waitFor(async () => (await waiters(other)) === 1, 'the waiter queued');
    await other.query('select pg_terminate_backend($1)', [pid]);
    await waiting;
    await waitFor(() => /warning: lost the cluster dispatch lock/.test(c.stderr()), 'the loss reported', 20_000);
    const second = fake.addContainer({ ...small, environment: { CRUNCH_RUN_SIM_MODE: 'complete' } });
    const locks = fake.count('containers.lock');
    // Several polls go by: the new container stays Queued, the held one goes on.
    const polls = fake.count('containers.list');
    await waitFor(() => fake.count('containers.list') >= polls + 10, 'ten more polls', 20_000);
    expect(fake.container(second.uuid)?.state).toBe('Queued');
    expect(fake.count('containers.lock')).toBe(locks);
    expect(fake.container(first.uuid)?.state).toBe('Running');

    await waiter.end();
    await waitFor(() => fake.container(second.uuid)?.state === 'Complete', 'the second container run after the lock is back', 20_000);
    expect(c.stdout() + c.stderr()).not.toContain(connection.password!);
    c.child.kill('SIGTERM');
    await c.exited;
  }, 90_000);
});
