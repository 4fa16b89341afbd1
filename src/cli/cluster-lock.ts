/**
 * The cluster-wide dispatcher lock: the PostgreSQL advisory lock 10005 on
 * the cluster database, the key every Arvados Go dispatcher takes ("any
 * dispatcher running"), so that ours and Go's exclude each other as two of
 * theirs do. The lock lives as long as one database session: the session
 * that took it keeps it until it ends, and a process that dies (kill -9,
 * host gone) ends its session, which lets a standby take over.
 *
 * While another session holds the lock, it tries again every 5 s, as Go
 * does. Once held, it watches its session (every `checkInterval`, and at
 * once when the connection reports an error or closes): a lost session is
 * reported at once, and the lock is taken again before anything goes on.
 *
 * The PostgreSQL client (`pg`) is loaded only when a lock is wanted, so a
 * dispatcher without a database configured never loads it.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import type { Client, ClientConfig } from 'pg';
import { describeError } from '../util/errors.js';
import { sleep } from '../util/sleep.js';
import type { PostgresConnection } from './cluster-sections.js';

/** The advisory lock key of Arvados' `dblock.Dispatch`. */
export const DISPATCH_LOCK_KEY = 10005;
/** Go's `retryDelay`: time between attempts while another session holds the lock. */
export const LOCK_RETRY_INTERVAL = 5_000;

/** Where the lock stands. */
export type ClusterLockState = 'connecting' | 'waiting' | 'held' | 'lost' | 'closed';

/** Options of {@link ClusterLock}. */
export interface ClusterLockOptions {
  /** The cluster database (`PostgreSQL.Connection`). */
  connection: PostgresConnection;
  /** Ms between attempts while the lock is not ours. Default {@link LOCK_RETRY_INTERVAL}. */
  retryInterval?: number;
  /** Ms between checks that the session holding the lock is alive. Default {@link LOCK_RETRY_INTERVAL}. */
  checkInterval?: number;
  /** Ms a connection attempt or check may take. Default 10 000. */
  timeout?: number;
  /** The lock key. Default {@link DISPATCH_LOCK_KEY}; tests may use another. */
  key?: number;
}

/** Events of a {@link ClusterLock}. */
export interface ClusterLockEvents {
  /** Another session holds the lock; `holder` is its client address, when the server says. Emitted when the holder changes. */
  waiting: [holder: string | undefined];
  /** The lock is ours. */
  held: [];
  /** The session holding the lock ended or stopped answering: the lock may be someone else's now. */
  lost: [reason: string];
  /** The database could not be reached or answered an error; the next attempt follows. Emitted when the message changes. */
  error: [message: string];
}

/** The `pg` client configuration of a `PostgreSQL.Connection`. */
export function clientConfig(c: PostgresConnection, timeout: number): ClientConfig {
  const mode = c.sslmode ?? 'prefer';
  // libpq's meanings: "require" encrypts without checking the certificate,
  // only the verify-* modes check it; the others ask for no encryption
  // (pg cannot fall back from TLS to plain as "prefer" would).
  const ssl = mode === 'verify-ca' || mode === 'verify-full' ? { rejectUnauthorized: true } : mode === 'require' ? { rejectUnauthorized: false } : false;
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    password: c.password,
    database: c.dbname,
    ssl,
    connectionTimeoutMillis: timeout,
    query_timeout: timeout,
    keepAlive: true,
    application_name: 'arvados-dispatch',
  };
}

/**
 * Holds the cluster-wide dispatcher lock: {@link start} it, wait for
 * {@link acquired} before dispatching, listen to `lost` and `held` to stop
 * and resume locking containers, {@link close} it on exit.
 */
export class ClusterLock extends EventEmitter<ClusterLockEvents> {
  readonly #opts: Required<Omit<ClusterLockOptions, 'connection'>> & { connection: PostgresConnection };
  readonly #ac = new AbortController();
  #state: ClusterLockState = 'connecting';
  #client: Client | undefined;
  #loop: Promise<void> | undefined;
  #lastError: string | undefined;
  #lastHolder: string | undefined = '';
  #resolveAcquired!: () => void;
  #rejectAcquired!: (err: Error) => void;
  /** Resolves the first time the lock is held; rejects if the lock is closed before. */
  readonly acquired: Promise<void>;

  constructor(opts: ClusterLockOptions) {
    super();
    this.#opts = {
      connection: opts.connection,
      retryInterval: opts.retryInterval ?? LOCK_RETRY_INTERVAL,
      checkInterval: opts.checkInterval ?? LOCK_RETRY_INTERVAL,
      timeout: opts.timeout ?? 10_000,
      key: opts.key ?? DISPATCH_LOCK_KEY,
    };
    this.acquired = new Promise<void>((resolve, reject) => {
      this.#resolveAcquired = resolve;
      this.#rejectAcquired = reject;
    });
    // Nobody may be waiting for it when it is closed first.
    this.acquired.catch(() => {});
  }

  /** Where the lock stands now. */
  get state(): ClusterLockState {
    return this.#state;
  }

  /** Whether the lock is ours now. */
  get held(): boolean {
    return this.#state === 'held';
  }

  /** A short sentence on where the lock stands, for status lines and `scheduling_status`. */
  get description(): string {
    switch (this.#state) {
      case 'held':
        return 'holding the cluster dispatch lock';
      case 'waiting':
        return `waiting for the cluster dispatch lock (held by another dispatcher${this.#lastHolder ? ` at ${this.#lastHolder}` : ''})`;
      case 'lost':
        return 'the cluster dispatch lock was lost; taking it again';
      case 'closed':
        return 'the cluster dispatch lock is released';
      default:
        return `connecting to the cluster database for the dispatch lock${this.#lastError ? ` (${this.#lastError})` : ''}`;
    }
  }

  /** Starts taking the lock, in the background. Idempotent. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Releases the lock (if held) and stops. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#ac.abort();
    // Ends a connection attempt in flight at once, instead of after its timeout.
    void this.#endClient();
    this.#rejectAcquired(new Error('the cluster lock was closed before it was acquired'));
    await this.#loop?.catch(() => {});
    await this.#endClient();
  }

  async #run(): Promise<void> {
    const signal = this.#ac.signal;
    const pg = (await import('pg')).default;
    while (!signal.aborted) {
      let lostNow = false;
      try {
        const client = new pg.Client(clientConfig(this.#opts.connection, this.#opts.timeout));
        this.#client = client;
        // Without a listener an error on an idle connection would be thrown.
        const ended = new Promise<string>((resolve) => {
          client.on('error', (err) => resolve(describeError(err)));
          client.on('end', () => resolve('the database connection closed'));
        });
        await client.connect();
        const r = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [this.#opts.key]);
        if (signal.aborted) break;
        if (r.rows[0]?.locked === true) {
          this.#lastError = undefined;
          // A later wait is a new one: say who holds the lock then, even if it is the same holder.
          this.#lastHolder = '';
          this.#state = 'held';
          this.#resolveAcquired();
          this.emit('held');
          const reason = await this.#watch(client, ended);
          if (signal.aborted) break;
          this.#state = 'lost';
          this.emit('lost', reason);
          lostNow = true;
        } else {
          const holder = await this.#holder(client);
          this.#state = 'waiting';
          if (holder !== this.#lastHolder) {
            this.#lastHolder = holder;
            this.emit('waiting', holder);
          }
        }
      } catch (err) {
        if (signal.aborted) break;
        const message = describeError(err);
        if (this.#state !== 'waiting') this.#state = 'connecting';
        if (message !== this.#lastError) {
          this.#lastError = message;
          this.emit('error', message);
        }
      }
      await this.#endClient();
      // Right after a loss, try at once: the session may have been cut while the server is fine.
      if (!lostNow) await sleep(this.#opts.retryInterval, signal).catch(() => {});
    }
  }

  /** Resolves with why the session holding the lock ended (or stopped answering), or on close. */
  async #watch(client: Client, ended: Promise<string>): Promise<string> {
    const done = new AbortController();
    const signal = AbortSignal.any([this.#ac.signal, done.signal]);
    const checks = (async (): Promise<string> => {
      for (;;) {
        await sleep(this.#opts.checkInterval, signal).catch(() => {});
        if (signal.aborted) return 'closed';
        try {
          await client.query('SELECT 1');
        } catch (err) {
          return `the database stopped answering: ${describeError(err)}`;
        }
      }
    })();
    const aborted = new Promise<string>((resolve) => signal.addEventListener('abort', () => resolve('closed'), { once: true }));
    try {
      return await Promise.race([ended, checks, aborted]);
    } finally {
      done.abort();
    }
  }

  /**
   * The client address of the session holding the lock, if the server tells.
   * pg_locks lists every database's locks, and advisory locks are per
   * database: another cluster's dispatcher on the same server holds the same
   * key in its own database. A one-bigint key shows as classid = the high
   * half, objid = the low half, objsubid = 1.
   */
  async #holder(client: Client): Promise<string | undefined> {
    try {
      const r = await client.query<{ addr: string | null; port: number | null; pid: number }>(
        'SELECT host(a.client_addr) AS addr, a.client_port AS port, a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid ' +
          "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 " +
          'AND l.classid::bigint = (($1::bigint >> 32) & 4294967295) AND l.objid::bigint = ($1::bigint & 4294967295) ' +
          'AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1',
        [this.#opts.key],
      );
      const row = r.rows[0];
      if (!row) return undefined;
      return row.addr ? `${row.addr}:${row.port ?? ''}` : `local pid ${row.pid}`;
    } catch {
      return undefined;
    }
  }

  async #endClient(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (!client) return;
    // Ending the session releases the lock; no explicit unlock is needed.
    await client.end().catch(() => {});
  }
}
