/**
 * User names that adapters put on a scheduler's command line (`bjobs -u`,
 * `qstat -u`, `sudo -u`).
 *
 * @module
 */
import { userInfo } from 'node:os';

/** A POSIX-style user name: nothing a command line could read as an option or a pattern. */
const USER_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/**
 * `name`, or the user this process runs as when it is undefined, checked as a
 * user name.
 *
 * @throws TypeError naming the option `field`.
 */
export function userName(field: string, name: string | undefined): string {
  const user = name ?? userInfo().username;
  if (!USER_NAME.test(user)) throw new TypeError(`${field}: not a user name: ${JSON.stringify(user)}`);
  return user;
}
