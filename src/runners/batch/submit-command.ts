/**
 * The submit command of one container: its arguments from the templates,
 * the environment the scheduler sees, and the secrets file the job reads
 * its credentials from, so that no secret is on a command line or in an
 * environment other users can list.
 *
 * @module
 */
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { RunnerConfigError } from '../../dispatcher/runner.js';
import type { Container } from '../../types.js';
import { describeError } from '../../util/errors.js';
import { crunchRunArgv, crunchRunSecrets } from '../crunch-run.js';
import type { RunResult } from './adapter.js';
import { containerValues } from './echoes.js';
import type { JobContext } from './job-context.js';
import { JobSecrets, JobSecretsError } from './job-secrets.js';
import type { JobState } from './job-state.js';
import { containerArguments, TemplateError } from './template.js';

/** Variables of this process's environment that the submit command (and so the job) gets. */
const PASSED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'];
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Submits one container's job; the template arguments are expanded once, at the first submission. */
export class SubmitCommand {
  readonly #ctx: JobContext;
  readonly #d: Dispatcher;
  /** Read at each use: the container's record may change while the secrets file is written. */
  readonly #state: JobState;
  #args: string[] | undefined;

  constructor(ctx: JobContext, d: Dispatcher, state: JobState) {
    this.#ctx = ctx;
    this.#d = d;
    this.#state = state;
  }

  /**
   * Writes the secrets file and runs the submit command. Resolves with the
   * command's result, or the error that kept it from running; rejects if
   * `signal` aborted it, or with a {@link RunnerConfigError} when this
   * host or our configuration is at fault.
   */
  async run(instanceType: string | undefined, signal: AbortSignal): Promise<RunResult | Error> {
    const o = this.#ctx.options;
    const uuid = this.#state.uuid;
    this.#args ??= this.#templateArgs(this.#state.latest, instanceType);
    const argv = crunchRunArgv(o.crunchRunCommand, o.crunchRunArgs, uuid, o.runtimeEngine);
    const env = this.#environment();
    let secretsPath: string;
    try {
      secretsPath = await this.#ctx.secrets.write(uuid, this.#secrets(env));
    } catch (err) {
      // This host's directory, not the container: stop locking.
      const why = err instanceof JobSecretsError ? err.message : `cannot write the job secrets file: ${describeError(err)}`;
      throw new RunnerConfigError(why, 'environment', { cause: err });
    }
    const spec = this.#ctx.adapter.submit({ uuid, script: JobSecrets.script(argv, secretsPath), args: this.#args, container: this.#state.latest, instanceType: instanceType ?? '' });
    try {
      return await this.#ctx.exec(spec, { env, signal, op: 'submit', echoes: containerValues(this.#state.latest) });
    } catch (err) {
      if (signal.aborted) throw err;
      return err instanceof Error ? err : new Error(describeError(err));
    }
  }

  /** The expanded templates (and GPU templates when the container wants GPUs). */
  #templateArgs(container: Container, instanceType: string | undefined): string[] {
    const { adapter, options: o } = this.#ctx;
    try {
      const maxRunMinutes = adapter.maxRunMinutes?.(container);
      return containerArguments(container, { ...o, instanceType, ...(maxRunMinutes === undefined ? {} : { maxRunMinutes }) }, adapter.templates, `${adapter.name} argument templates`);
    } catch (err) {
      // Validated at startup; reaching this is our configuration, never the container's.
      if (err instanceof TemplateError) throw new RunnerConfigError(err.message, 'configuration', { cause: err });
      throw err;
    }
  }

  /**
   * The submit command's environment, which most schedulers export to the
   * job and show to other users: no secret in it.
   */
  #environment(): Record<string, string> {
    const pass = [...PASSED_ENV, ...(this.#ctx.adapter.passEnv ?? [])];
    const passes = (k: string): boolean => pass.some((p) => (p.endsWith('*') ? k.startsWith(p.slice(0, -1)) : k === p));
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && passes(k)) env[k] = v;
    env.PATH ??= DEFAULT_PATH;
    Object.assign(env, this.#ctx.options.environment);
    return env;
  }

  /**
   * What the job's secrets file sets before crunch-run starts: PATH and the
   * `environment` option (Grid Engine exports nothing of qsub's
   * environment), the API credentials and `GatewayAuthSecret`.
   */
  #secrets(env: Readonly<Record<string, string>>): Record<string, string> {
    const o = this.#ctx.options;
    return { PATH: env.PATH ?? DEFAULT_PATH, ...o.environment, ...crunchRunSecrets(this.#state.uuid, this.#d.client.credentialsEnv(), o.systemRootToken) };
  }
}
