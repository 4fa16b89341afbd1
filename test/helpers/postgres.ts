// The PostgreSQL of scripts/postgres-up.sh, as the system-tier tests find it.

/** `$ARVADOS_DISPATCH_TEST_PG`, else the database scripts/postgres-up.sh makes. */
export const TEST_PG_URL = process.env.ARVADOS_DISPATCH_TEST_PG ?? 'postgresql://arvados_dispatch_test:xyzzy-lock-test@127.0.0.1:5432/arvados_test';

/**
 * {@link TEST_PG_URL} with `_standby` after the database name: the second
 * database scripts/postgres-up.sh makes. Advisory locks are per database, so
 * a file that takes the dispatch lock there runs beside one that takes it in
 * the first without either waiting for the other.
 */
export function standbyPgUrl(): string {
  const u = new URL(TEST_PG_URL);
  u.pathname = `${u.pathname}_standby`;
  return u.toString();
}
