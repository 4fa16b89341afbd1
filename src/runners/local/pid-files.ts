/**
 * Which crunch-run processes this user's local dispatcher started, so that
 * a restart (after a crash or `kill -9`) follows a crunch-run that survived
 * instead of starting a second one for the same container. One file per
 * container, `<uuid>.pid`, holding the pid and the process's start time
 * from `/proc/<pid>/stat` (pids are reused; a pid with another start time
 * is another process), in a private directory (0700, files 0600).
 *
 * @module
 */
import { realClock, type Clock } from '../../util/sleep.js';
import { chmod, lstat, mkdir, open, readFile, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isContainerUuid } from '../../uuid.js';

/**
 * The default directory: `$XDG_RUNTIME_DIR/arvados-dispatch/local` (gone at
 * reboot, as the processes are), else `~/.cache/arvados-dispatch/local`.
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime && runtime.startsWith('/')) return join(runtime, 'arvados-dispatch', 'local');
  return join(homedir(), '.cache', 'arvados-dispatch', 'local');
}

/** A process as this file recorded it. */
export interface PidRecord {
  readonly pid: number;
  /** Field 22 of `/proc/<pid>/stat` (clock ticks since boot). */
  readonly startTime: string;
}

/** The start time of process `pid` (field 22 of `/proc/<pid>/stat`), or undefined if there is no such process. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold anything; fields 3.. follow the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  // A zombie has exited: nothing to follow.
  if (state === 'Z' || state === 'X') return undefined;
  return rest[19];
}

/** Whether `pid` still is the process recorded (same start time) and runs for `uuid`. */
export async function isAlive(rec: PidRecord, uuid: string): Promise<boolean> {
  if ((await processStartTime(rec.pid)) !== rec.startTime) return false;
  try {
    const argv = (await readFile(`/proc/${rec.pid}/cmdline`, 'utf8')).split('\0');
    return argv.includes(uuid);
  } catch {
    return false;
  }
}

/** The pid files of one user's local runners. */
export class PidFiles {
  /** The directory holding the files. */
  readonly dir: string;
  #ready: Promise<void> | undefined;

  /** @param dir - An absolute path; created (mode 0700) if missing. */
  constructor(dir: string) {
    if (typeof dir !== 'string' || !dir.startsWith('/') || dir.includes('\0')) throw new TypeError(`stateDir must be an absolute path, got ${JSON.stringify(dir)}`);
    this.dir = dir;
  }

  #path(uuid: string): string {
    if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
    return join(this.dir, `${uuid}.pid`);
  }

  /** Creates the directory once, private to this user. */
  ready(): Promise<void> {
    this.#ready ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const st = await lstat(this.dir);
      if (!st.isDirectory()) throw new Error(`the state directory ${this.dir} is not a directory`);
      const uid = process.getuid?.();
      if (uid !== undefined && st.uid !== uid) throw new Error(`the state directory ${this.dir} belongs to uid ${st.uid}, not to this user (uid ${uid})`);
      if ((st.mode & 0o077) !== 0) await chmod(this.dir, 0o700);
      await this.#sweep();
    })();
    this.#ready.catch(() => (this.#ready = undefined));
    return this.#ready;
  }

  /**
   * Once, before this process starts anything: deletes the files of
   * crunch-run processes that are gone (their output may hold secrets).
   */
  async #sweep(): Promise<void> {
    const uuids = new Set<string>();
    for (const name of await readdir(this.dir)) {
      const m = /^([a-z0-9]{5}-dz642-[a-z0-9]{15})\.(?:pid|stdout|stderr)$/.exec(name);
      if (m) uuids.add(m[1]);
    }
    // live() deletes what is stale, and a pid file missing means nothing runs.
    for (const uuid of uuids) await this.live(uuid);
  }

  /** Records that `pid` runs crunch-run for `uuid`. */
  async write(uuid: string, pid: number): Promise<void> {
    await this.ready();
    const startTime = await processStartTime(pid);
    if (startTime === undefined) return;
    const path = this.#path(uuid);
    const tmp = `${path}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify({ pid, startTime } satisfies PidRecord)}\n`);
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  }

  /** Whether there is a pid file for `uuid` (synchronous: no reordering of callers when there is none). */
  hasRecord(uuid: string): boolean {
    return existsSync(this.#path(uuid));
  }

  /**
   * The live crunch-run recorded for `uuid`, if its process still runs (same
   * pid, same start time, `uuid` on its command line); a stale file is deleted.
   */
  async live(uuid: string): Promise<PidRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.#path(uuid), 'utf8');
    } catch {
      // No record: nothing of ours runs for it; output files left over go.
      await this.remove(uuid);
      return undefined;
    }
    let rec: PidRecord | undefined;
    try {
      const v = JSON.parse(text) as Partial<PidRecord>;
      if (Number.isInteger(v.pid) && (v.pid as number) > 1 && typeof v.startTime === 'string') rec = { pid: v.pid as number, startTime: v.startTime };
    } catch {
      rec = undefined;
    }
    if (rec && (await isAlive(rec, uuid))) return rec;
    await this.remove(uuid);
    return undefined;
  }

  /**
   * Where crunch-run's stdout or stderr goes (mode 0600): a file, not a
   * pipe, so that a crunch-run outliving its dispatcher does not die of
   * SIGPIPE at its next write, and the next dispatcher can read on.
   */
  outputPath(uuid: string, stream: 'stdout' | 'stderr'): string {
    return `${this.#path(uuid).slice(0, -'.pid'.length)}.${stream}`;
  }

  /** Opens (truncating) `uuid`'s output files for a new crunch-run. */
  async openOutput(uuid: string): Promise<[FileHandle, FileHandle]> {
    await this.ready();
    const out = await open(this.outputPath(uuid, 'stdout'), 'w', 0o600);
    try {
      return [out, await open(this.outputPath(uuid, 'stderr'), 'w', 0o600)];
    } catch (err) {
      await out.close();
      throw err;
    }
  }

  /** Deletes `uuid`'s files, if there are any. */
  async remove(uuid: string): Promise<void> {
    await rm(this.#path(uuid), { force: true });
    await rm(this.outputPath(uuid, 'stdout'), { force: true });
    await rm(this.outputPath(uuid, 'stderr'), { force: true });
  }
}

/**
 * What is appended to `path` from `from` on, as a stream, until `done`
 * resolves (and then what was written before it); polls every `intervalMs`
 * of `clock`'s time.
 */
export function followFile(path: string, done: Promise<unknown>, from: 'start' | 'end' = 'start', clock: Clock = realClock, intervalMs = 100): Readable {
  const out = new PassThrough();
  let finished = false;
  void done.finally(() => (finished = true));
  void (async () => {
    const fh = await open(path, 'r');
    try {
      let pos = from === 'end' ? (await stat(path)).size : 0;
      const buf = Buffer.alloc(64 * 1024);
      for (let last = false; ; ) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead > 0) {
          pos += bytesRead;
          if (!out.write(Buffer.from(buf.subarray(0, bytesRead)))) await new Promise((r) => out.once('drain', r));
          continue;
        }
        if (last) break;
        // One more pass after the end: what was written just before it.
        if (finished) last = true;
        else await clock.sleep(intervalMs);
      }
    } finally {
      await fh.close();
    }
  })().then(
    () => out.end(),
    (err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))),
  );
  return out;
}
