/**
 * How the API token and `GatewayAuthSecret` reach a batch job without any
 * other Unix user seeing them: never on a command line (`ps`), never in the
 * job's environment as the scheduler stores and shows it (`qstat -j`
 * env_list, `bjobs -env`, `scontrol show job`), never in the job script
 * (spooled, often world-readable). Each job gets a file, mode 0600, in a
 * directory of mode 0700 owned by the user the job runs as; the job script
 * reads it, deletes it and `exec`s crunch-run; the runner deletes it too
 * once the job has left the queue (a job cancelled while pending never
 * reads it).
 *
 * The directory must be at the same path on the compute nodes (a shared
 * home directory or cluster filesystem).
 *
 * @module
 */
import { execFile } from 'node:child_process';
import { chmod, chown, lstat, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isContainerUuid } from '../../uuid.js';
import { shellQuote } from './script.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The default directory: `$XDG_CACHE_HOME/arvados-dispatch/job-secrets`, else
 * `~/.cache/arvados-dispatch/job-secrets` (home directories are usually
 * shared with the compute nodes).
 */
export function defaultSecretsDir(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(cache, 'arvados-dispatch', 'job-secrets');
}

/** Why the secrets directory cannot be used; the runner turns it into a configuration error. */
export class JobSecretsError extends Error {
  override name = 'JobSecretsError';
}

/** Who the job runs as, when that is not this process's user (LSF's `sudo -u`). */
interface Owner {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

async function lookUpUser(name: string): Promise<Owner> {
  let out: string;
  try {
    ({ stdout: out } = await promisify(execFile)('getent', ['passwd', name], { timeout: 10_000 }));
  } catch {
    throw new JobSecretsError(`cannot look up the user ${JSON.stringify(name)} (getent passwd failed)`);
  }
  const fields = out.trim().split('\n')[0]?.split(':') ?? [];
  const uid = Number(fields[2]);
  const gid = Number(fields[3]);
  if (fields[0] !== name || !Number.isInteger(uid) || !Number.isInteger(gid)) throw new JobSecretsError(`cannot look up the user ${JSON.stringify(name)}`);
  return { name, uid, gid };
}

/**
 * The per-job secret files of one batch runner.
 *
 * @example
 * const secrets = new JobSecrets('/home/crunch/.cache/arvados-dispatch/job-secrets');
 * const path = await secrets.write(uuid, { ARVADOS_API_TOKEN: token });
 * const script = secrets.script(['crunch-run', uuid], path);
 */
export class JobSecrets {
  /** The directory holding the files. */
  readonly dir: string;
  readonly #jobUser: string | undefined;
  #ready: Promise<Owner | undefined> | undefined;

  /**
   * @param dir - An absolute path; created (mode 0700) if missing.
   * @param jobUser - The user jobs run as, when it is not this process's
   *   user (LSF's `sudoUser`): the files must be readable by that user and
   *   nobody else, which only root can arrange (chown), so any other
   *   process user is refused with a clear error at the first submission.
   */
  constructor(dir: string, jobUser?: string) {
    if (typeof dir !== 'string' || !dir.startsWith('/') || dir.includes('\0')) throw new TypeError(`secretsDir must be an absolute path, got ${JSON.stringify(dir)}`);
    this.dir = dir;
    const me = safeUserName();
    this.#jobUser = jobUser !== undefined && jobUser !== me ? jobUser : undefined;
  }

  /** The file of one container's job. */
  path(uuid: string): string {
    if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
    return join(this.dir, `${uuid}.env`);
  }

  /** Creates and checks the directory once; rejects with {@link JobSecretsError}. */
  ready(): Promise<Owner | undefined> {
    this.#ready ??= this.#prepare();
    // A failure is retried at the next call: the operator may fix it while we run.
    this.#ready.catch(() => (this.#ready = undefined));
    return this.#ready;
  }

  async #prepare(): Promise<Owner | undefined> {
    const owner = this.#jobUser === undefined ? undefined : await lookUpUser(this.#jobUser);
    const root = process.getuid?.() === 0;
    if (owner && !root) {
      throw new JobSecretsError(
        `jobs run as ${owner.name} (sudo), so their secrets file must be readable by ${owner.name} only: ` +
          `run the dispatcher as root (it then chowns the files) or as ${owner.name} without sudoUser`,
      );
    }
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new JobSecretsError(`cannot create the job secrets directory ${this.dir}: ${(err as Error).message}`);
    }
    const uid = owner?.uid ?? process.getuid?.();
    if (owner) await chown(this.dir, owner.uid, owner.gid);
    const st = await lstat(this.dir);
    if (!st.isDirectory()) throw new JobSecretsError(`the job secrets directory ${this.dir} is not a directory`);
    if (uid !== undefined && st.uid !== uid) throw new JobSecretsError(`the job secrets directory ${this.dir} belongs to uid ${st.uid}, not to the job's user (uid ${uid})`);
    if ((st.mode & 0o077) !== 0) {
      // Ours: tighten it, as ssh would ask the user to.
      await chmod(this.dir, 0o700);
    }
    return owner;
  }

  /**
   * Writes `env` for `uuid`'s job: a new file, mode 0600 from the start,
   * renamed into place (a resubmission replaces the old one atomically).
   * Returns its path.
   */
  async write(uuid: string, env: Readonly<Record<string, string>>): Promise<string> {
    const owner = await this.ready();
    const path = this.path(uuid);
    let text = '';
    for (const [name, value] of Object.entries(env)) {
      if (!ENV_NAME.test(name)) throw new TypeError(`invalid environment variable name ${JSON.stringify(name)}`);
      if (value.includes('\0')) throw new TypeError(`the value of ${name} contains a NUL character`);
      text += `${name}=${shellQuote(value)}\n`;
    }
    const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      if (owner) await fh.chown(owner.uid, owner.gid);
      await fh.writeFile(text);
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return path;
  }

  /**
   * Deletes files a dead dispatcher left behind: those older than `minAgeMs`
   * whose container `keep` does not claim (its job is in the queue, or a
   * runner follows it). Returns how many were deleted. `now` is wall time,
   * not the runner's clock: it is compared with the files' modification times.
   */
  async sweep(keep: (uuid: string) => boolean, minAgeMs = 10 * 60_000, now = Date.now()): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return 0;
    }
    let n = 0;
    for (const name of names) {
      const m = /^([a-z0-9]{5}-dz642-[a-z0-9]{15})\.env(?:\.\d+\.\d+\.tmp)?$/.exec(name);
      if (!m) continue;
      const path = join(this.dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (!st || now - st.mtimeMs < minAgeMs || (!name.endsWith('.tmp') && keep(m[1]))) continue;
      await rm(path, { force: true });
      n++;
    }
    return n;
  }

  /** Deletes `uuid`'s file, if there is one. */
  async remove(uuid: string): Promise<void> {
    await rm(this.path(uuid), { force: true });
  }

  /**
   * The job script: reads the secrets file into the environment (exported),
   * deletes it, and `exec`s `argv`. Without the file (deleted, or not on
   * this node's filesystem) it fails with a clear message instead of running
   * crunch-run without credentials.
   */
  static script(argv: readonly string[], secretsPath: string): string {
    if (argv.length === 0) throw new TypeError('empty command');
    const f = shellQuote(secretsPath);
    return (
      '#!/bin/sh\n' +
      `f=${f}\n` +
      'if ! [ -r "$f" ]; then echo "arvados-dispatch: cannot read the job secrets file $f (is its directory shared with this node?)" >&2; exit 1; fi\n' +
      'set -a\n' +
      '. "$f" || exit 1\n' +
      'set +a\n' +
      'rm -f "$f"\n' +
      `exec ${argv.map(shellQuote).join(' ')}\n`
    );
  }
}

function safeUserName(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}
