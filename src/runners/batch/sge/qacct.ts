/**
 * Why a Grid Engine job ended, from its accounting record (`qacct -j <id>`).
 *
 * qacct prints `key value` lines; a job deleted while pending has no record
 * (`error: job id 6 not found`). Grid Engine writes the record when the job
 * ends, so it may appear a moment after the job has left qstat.
 *
 * @module
 */

/** The accounting fields this module reads, as qacct printed them. */
export interface SgeAccounting {
  jobnumber: string;
  jobname: string;
  /** `0`, or a code and a text, e.g. `100 : assumedly after job`. */
  failed: string;
  /** e.g. `0`, `3`, `137`; qacct may add a signal name in parentheses. */
  exitStatus: string;
  /** Peak virtual memory, e.g. `3.406MB`. */
  maxvmem: string;
  /** Wall-clock seconds, e.g. `3s` or `3`. */
  ruWallclock: string;
  /** The job's resource requests, e.g. `-l h_rt=60,h_vmem=1G -pe smp 2`. */
  category: string;
}

/** Why a job ended, in the batch core's vocabulary. */
export type SgeEndKind = 'COMPLETED' | 'OUT_OF_MEMORY' | 'TIMEOUT' | 'CANCELLED' | 'FAILED' | 'NODE_FAIL';

/** A job's end as read from accounting. */
export interface SgeEnd {
  kind: SgeEndKind;
  /** The job script's exit status, when it ran to an exit. */
  exitCode?: number;
  /** One sentence for people, e.g. "Grid Engine job 12 ran out of memory (…)". */
  message: string;
}

const KEYS: Record<string, keyof SgeAccounting> = {
  jobnumber: 'jobnumber',
  jobname: 'jobname',
  failed: 'failed',
  exit_status: 'exitStatus',
  maxvmem: 'maxvmem',
  ru_wallclock: 'ruWallclock',
  category: 'category',
};

/**
 * Parses `qacct -j <id>` output. With several records (a job number reused
 * after a reinstall) the last one is the newest. Returns `undefined` when
 * there is no complete record.
 */
export function parseQacct(stdout: string): SgeAccounting | undefined {
  const records = stdout.split(/^=+\s*$/m);
  for (let i = records.length - 1; i >= 0; i--) {
    const fields: Partial<SgeAccounting> = {};
    for (const line of records[i].split('\n')) {
      const m = /^([a-z_]+)\s+(.*?)\s*$/.exec(line);
      if (!m) continue;
      const key = KEYS[m[1]];
      if (key !== undefined) fields[key] = m[2];
    }
    if (fields.jobnumber !== undefined && fields.failed !== undefined && fields.exitStatus !== undefined) {
      return {
        jobnumber: fields.jobnumber,
        jobname: fields.jobname ?? '',
        failed: fields.failed,
        exitStatus: fields.exitStatus,
        maxvmem: fields.maxvmem ?? '',
        ruWallclock: fields.ruWallclock ?? '',
        category: fields.category ?? '',
      };
    }
  }
  return undefined;
}

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Bytes from a qacct size (`3.406MB`, `1.2GB`, `0.000B`); `undefined` if unreadable. */
export function parseQacctSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)B?$/i.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNITS[m[2].toUpperCase()];
}

/**
 * Bytes from a Grid Engine memory request (`h_vmem=4G`): `K`/`M`/`G` are
 * powers of 1024, lower case `k`/`m`/`g` powers of 1000.
 */
export function parseSgeMemory(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([KMGTkmgt]?)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = m[2];
  const base = unit !== '' && unit === unit.toLowerCase() ? 1000 : 1024;
  const power = { '': 0, k: 1, m: 2, g: 3, t: 4 }[unit.toLowerCase()] ?? 0;
  return Number(m[1]) * base ** power;
}

/** Seconds from a Grid Engine time (`3600`, `1:00:00`, `0:0:30`). */
export function parseSgeTime(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+(?:\.\d+)?s?$/.test(t)) return Number(t.replace(/s$/, ''));
  const m = /^(\d+):(\d+):(\d+)$/.exec(t);
  return m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : undefined;
}

/** A `-l` resource value from the accounting `category` (e.g. `h_vmem`). */
function requested(category: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|[\\s,])${name}=([^,\\s]+)`).exec(category);
  return m?.[1];
}

const GiB = 1024 ** 3;
function gib(bytes: number): string {
  return `${(bytes / GiB).toFixed(bytes < 10 * GiB ? 1 : 0)} GiB`;
}

/**
 * Maps an accounting record to why the job ended:
 *
 * - exit status 0 and not failed: `COMPLETED`;
 * - killed (signal exit status or a failure after the job started) with its
 *   peak memory at its `h_vmem`: `OUT_OF_MEMORY`;
 * - killed at its `h_rt` wall-clock limit, or failure 37 (qmaster enforced a
 *   limit) without a memory explanation: `TIMEOUT`;
 * - failure 100 ("assumedly after job") with a signal, or exit status 143
 *   or 130 (the job ended on SIGTERM or SIGINT, which qdel sends with a
 *   `terminate_method`): `CANCELLED` (by us or someone else: the caller
 *   knows which);
 * - failures 1–99 other than 37 happen before the job runs (the execution
 *   host could not set it up): `NODE_FAIL`;
 * - any other non-zero exit status: `FAILED` with that code.
 */
export function sgeEnd(acct: SgeAccounting): SgeEnd {
  const id = acct.jobnumber;
  const failedCode = Number(/^(\d+)/.exec(acct.failed)?.[1] ?? NaN);
  const failedText = acct.failed.replace(/^\d+\s*:?\s*/, '').trim();
  const exitCode = Number(/^(\d+)/.exec(acct.exitStatus)?.[1] ?? NaN);
  const code = Number.isFinite(exitCode) ? exitCode : undefined;
  const signalled = code !== undefined && code > 128;
  const killed = signalled || (Number.isFinite(failedCode) && failedCode !== 0);

  if (failedCode === 0 && code === 0) return { kind: 'COMPLETED', exitCode: 0, message: `Grid Engine job ${id} exited 0` };

  const maxvmem = parseQacctSize(acct.maxvmem);
  const hVmemText = requested(acct.category, 'h_vmem');
  const hVmem = hVmemText === undefined ? undefined : parseSgeMemory(hVmemText);
  if (killed && maxvmem !== undefined && hVmem !== undefined && hVmem > 0 && maxvmem >= hVmem * 0.95) {
    return {
      kind: 'OUT_OF_MEMORY',
      exitCode: code,
      message: `Grid Engine job ${id} ran out of memory (requested ${gib(hVmem)}, max vmem ${gib(maxvmem)})`,
    };
  }
  const hRtText = requested(acct.category, 'h_rt');
  const hRt = hRtText === undefined ? undefined : parseSgeTime(hRtText);
  const wall = parseSgeTime(acct.ruWallclock);
  if (failedCode === 37 || (killed && hRt !== undefined && wall !== undefined && wall >= hRt)) {
    const limit = hRt === undefined ? '' : ` (limit ${hRt} s)`;
    return { kind: 'TIMEOUT', exitCode: code, message: `Grid Engine job ${id} reached its run time limit${limit}` };
  }
  if (failedCode === 100 && signalled) {
    return { kind: 'CANCELLED', exitCode: code, message: `Grid Engine job ${id} was deleted (exit status ${acct.exitStatus})` };
  }
  // SIGTERM or SIGINT that the job answered by exiting: what qdel sends with
  // the queue's terminate_method, or an operator's kill.
  if (code === 143 || code === 130) {
    return { kind: 'CANCELLED', exitCode: code, message: `Grid Engine job ${id} was terminated by a signal (exit status ${acct.exitStatus})` };
  }
  if (Number.isFinite(failedCode) && failedCode > 0 && failedCode < 100) {
    return { kind: 'NODE_FAIL', exitCode: code, message: `Grid Engine could not run job ${id}: failed ${failedCode}${failedText ? ` (${failedText})` : ''}` };
  }
  return {
    kind: 'FAILED',
    exitCode: code,
    message: `Grid Engine job ${id} failed with exit status ${acct.exitStatus}${failedCode ? ` (failed ${acct.failed})` : ''}`,
  };
}
