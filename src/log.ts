/**
 * Loggers on `debug` namespaces (`DEBUG=arvados-dispatch:*` shows them all).
 * One namespace per concept, so `DEBUG=arvados-dispatch:dispatcher` shows the
 * poll loop without the HTTP chatter.
 *
 * Every line is formatted first and then redacted whole (known secrets, v2
 * tokens, Authorization values), so debug output can never show a token, even
 * one a server echoed into an error that is being logged.
 *
 * @module
 */
import { format } from 'node:util';
import createDebug from 'debug';
import { Redactor } from './util/redact.js';

const secrets = new Redactor();

/**
 * Masks `secret` (and anything else the redactor derives from it) in every
 * debug line from now on. `ArvadosClient` registers its token here.
 */
export function addLogSecrets(...values: string[]): void {
  for (const s of values) secrets.add(s);
}

/** A debug logger: printf-style like `debug`, redacted. */
export interface Logger {
  (formatter: string, ...args: unknown[]): void;
  /** Whether the namespace is enabled (checked before any formatting). */
  readonly enabled: boolean;
  /** `arvados-dispatch:<name>`. */
  readonly namespace: string;
}

/** A redacting `debug` logger for `arvados-dispatch:<name>`. */
export function logger(name: string): Logger {
  const d = createDebug(`arvados-dispatch:${name}`);
  const log = (formatter: string, ...args: unknown[]): void => {
    if (!d.enabled) return;
    // util.format's %o shows hidden properties over many lines; %O is debug's one-object form.
    d('%s', secrets.redact(format(formatter.replace(/%o/g, '%O'), ...args)));
  };
  return Object.defineProperties(log, {
    enabled: { get: () => d.enabled },
    namespace: { value: d.namespace },
  }) as Logger;
}
