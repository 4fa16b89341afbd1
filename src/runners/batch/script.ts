/**
 * The batch script that sbatch reads on stdin: a `/bin/sh` script that sets a
 * few variables and `exec`s crunch-run, so the batch step *is* crunch-run and
 * `scancel --batch --signal=TERM` reaches it directly.
 *
 * @module
 */

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Quotes `s` for a POSIX shell: wraps it in single quotes, inside which
 * nothing is special, and writes each `'` as `'\''` (close, escaped quote,
 * reopen).
 *
 * @example
 * shellQuote("b'ar") // => `'b'\''ar'`
 */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Builds the script `#!/bin/sh\nK='v' ... exec 'arg0' 'arg1' ...\n`.
 *
 * Variables are prefixed to the `exec` line, so they reach the command's
 * environment and nothing else. They appear in the order of `env`'s keys.
 * The script is stored by slurmctld and readable by administrators, so do not
 * put secrets in `env`: pass them through sbatch's own environment instead.
 *
 * @param argv - The command and its arguments; must not be empty.
 * @param env - Extra environment variables for the command.
 * @throws TypeError if `argv` is empty or a variable name is not a valid
 *   shell identifier (it would otherwise be run as a command).
 */
export function batchScript(argv: readonly string[], env: Readonly<Record<string, string>> = {}): string {
  if (argv.length === 0) {
    throw new TypeError('batchScript: empty command');
  }
  let script = '#!/bin/sh\n';
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name)) {
      throw new TypeError(`batchScript: invalid environment variable name ${JSON.stringify(name)}`);
    }
    script += `${name}=${shellQuote(value)} `;
  }
  script += 'exec';
  for (const arg of argv) {
    script += ` ${shellQuote(arg)}`;
  }
  return `${script}\n`;
}
