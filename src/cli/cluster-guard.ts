/**
 * What keeps a second dispatcher off the cluster, for the dispatching
 * commands: with `PostgreSQL.Connection` in the cluster config, the
 * {@link ClusterLock} (Go's `dblock.Dispatch`), and the Dispatcher held —
 * neither locking nor adopting — whenever the lock is not ours; without
 * one, a single startup warning that nothing guards against a second
 * dispatcher.
 *
 * @module
 */
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import type { Options } from './args.js';
import { ClusterLock, DISPATCH_LOCK_KEY, LOCK_RETRY_INTERVAL, type ClusterLockOptions } from './cluster-lock.js';
import { clusterSections } from './cluster-sections.js';
import { formatDuration } from './duration.js';
import type { Output } from './output.js';

/** The cluster guard of one command run. */
export interface ClusterGuard {
  /** The lock, when a database is configured. */
  readonly lock: ClusterLock | undefined;
  /**
   * Resolves once this process may dispatch: at once without a database,
   * else when the lock is first held (e.g. for systemd's `READY=1`).
   * Rejects if the guard is closed first.
   */
  readonly ready: Promise<void>;
  /** Releases the lock, if any. Idempotent. */
  close(): Promise<void>;
}

/**
 * Guards `d` by the cluster lock of the config `opts` read, and says what
 * happens to the lock on `out`. Call before `d.run()`: the Dispatcher is
 * held from the start until the lock is ours.
 *
 * @param lockOptions - Overrides of the lock's timing (tests).
 */
export function guardCluster(opts: Options, out: Output, d: Dispatcher, lockOptions: Partial<Omit<ClusterLockOptions, 'connection'>> = {}): ClusterGuard {
  const connection = clusterSections(opts.config).postgres;
  if (!connection) {
    out.event(
      'cluster-lock',
      'no PostgreSQL.Connection in the cluster config: nothing keeps a second dispatcher (another arvados-dispatch, or an Arvados Go dispatcher) from dispatching on this cluster at the same time',
      { state: 'none' },
    );
    return { lock: undefined, ready: Promise.resolve(), close: () => Promise.resolve() };
  }
  if (connection.password) out.addSecret(connection.password);
  const lock = new ClusterLock({ connection, ...lockOptions });
  const retry = formatDuration(lockOptions.retryInterval ?? LOCK_RETRY_INTERVAL);
  const where = `${connection.host ?? 'localhost'}${connection.port ? `:${connection.port}` : ''}/${connection.dbname ?? ''}`;
  const fields = { key: lockOptions.key ?? DISPATCH_LOCK_KEY, database: where };
  d.hold(lock.description);
  lock.on('waiting', (holder) => {
    d.hold(lock.description);
    out.event('cluster-lock', `waiting for the cluster dispatch lock on ${where}: held by another dispatcher${holder ? ` (${holder})` : ''}; trying again every ${retry}`, {
      ...fields,
      state: 'waiting',
      holder: holder ?? null,
    });
  });
  lock.on('held', () => {
    out.event('cluster-lock', `holding the cluster dispatch lock on ${where}: dispatching`, { ...fields, state: 'held' });
    d.resume();
  });
  lock.on('lost', (reason) => {
    d.hold(lock.description);
    out.warn(`lost the cluster dispatch lock (${reason}): locking and adopting no container until it is taken again; containers already held go on`, { ...fields, state: 'lost', reason }, 'cluster-lock-lost');
  });
  lock.on('error', (message) => {
    if (!lock.held) d.hold(lock.description);
    out.warn(`cluster database ${where}: ${message}; trying again every ${retry}`, { ...fields, state: lock.state }, 'cluster-lock-error');
  });
  lock.start();
  return { lock, ready: lock.acquired, close: () => lock.close() };
}
