/**
 * Loggers on `debug` namespaces (`DEBUG=arvados-dispatch:*` shows them all).
 * One namespace per concept, so `DEBUG=arvados-dispatch:dispatcher` shows the
 * poll loop without the HTTP chatter.
 *
 * @module
 */
import createDebug from 'debug';

/** A `debug` logger for `arvados-dispatch:<name>`. */
export function logger(name: string): createDebug.Debugger {
  return createDebug(`arvados-dispatch:${name}`);
}
