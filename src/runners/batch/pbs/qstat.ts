/**
 * OpenPBS / PBS Professional's `qstat -f -F json` output, as OpenPBS 23.06
 * prints it: `{"timestamp", "pbs_version", "pbs_server", "Jobs": {"<id>":
 * {"Job_Name", "job_state", "Priority", "comment", "exec_host",
 * "Exit_status", "Resource_List": {...}, ...}}}`; the `Jobs` key is absent
 * when there are none.
 *
 * @module
 */
import type { JobState, TerminalKind, TerminalReason } from '../adapter.js';

/** One job of `qstat -f -F json`, the fields the adapter reads. */
export interface PbsJob {
  /** `N.server` (or `N[].server` for an array job). */
  readonly id: string;
  readonly name: string;
  /** The one-letter state: Q, H, W, T, R, E, B, S, U, X, F, M. */
  readonly state: string;
  /** The job's `Priority` attribute (−1024…1023); 0 when absent. */
  readonly priority: number;
  /** The scheduler's `comment` ("Not Running: ..."), '' when absent. */
  readonly comment: string;
  /** `exec_host` of a running job (`node1/0*2+node2/0`), when shown. */
  readonly execHost?: string;
  /** `Exit_status` of a finished job (`-x`). */
  readonly exitStatus?: number;
  /** `Resource_List.walltime` and `.mem`, for messages. */
  readonly walltime?: string;
  readonly mem?: string;
}

/** Thrown when the output is not the JSON document qstat prints. */
export class QstatJsonParseError extends Error {
  override name = 'QstatJsonParseError';
}

const JOB_ID = /^\d+(?:\[\d*\])?(?:\.[\w.-]+)?$/;

function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

function integer(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * The jobs of `qstat -f -F json` (with or without `-x`). A job whose entry
 * is malformed goes to `onBadLine` (as its id) and is skipped.
 *
 * @throws QstatJsonParseError if the output is not such a document at all.
 */
export function parseQstatJson(stdout: string, onBadLine?: (line: string) => void): PbsJob[] {
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch (err) {
    throw new QstatJsonParseError(`qstat -F json printed no JSON document: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new QstatJsonParseError('qstat -F json printed no JSON object');
  const jobs = (doc as { Jobs?: unknown }).Jobs;
  if (jobs === undefined) return [];
  if (typeof jobs !== 'object' || jobs === null || Array.isArray(jobs)) throw new QstatJsonParseError('qstat -F json: "Jobs" is not an object');
  const out: PbsJob[] = [];
  for (const [id, raw] of Object.entries(jobs as Record<string, unknown>)) {
    const a = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    const name = text(a.Job_Name);
    const state = text(a.job_state);
    const priority = a.Priority === undefined ? 0 : integer(a.Priority);
    if (!JOB_ID.test(id) || name === undefined || state === undefined || !/^[A-Z]$/.test(state) || priority === undefined) {
      onBadLine?.(id);
      continue;
    }
    const resources = (typeof a.Resource_List === 'object' && a.Resource_List !== null ? a.Resource_List : {}) as Record<string, unknown>;
    const exitStatus = integer(a.Exit_status);
    const execHost = text(a.exec_host);
    const walltime = text(resources.walltime);
    const mem = text(resources.mem);
    out.push({
      id,
      name,
      state,
      priority,
      comment: text(a.comment) ?? '',
      ...(execHost ? { execHost } : {}),
      ...(exitStatus !== undefined ? { exitStatus } : {}),
      ...(walltime ? { walltime } : {}),
      ...(mem ? { mem } : {}),
    });
  }
  return out;
}

/**
 * The core's state of a PBS job state: Q (queued), W (waiting for its start
 * time) are pending; R running; H (held), T (in transit), E (exiting),
 * S/U (suspended), B (array begun) are other. F, X and M (finished, subjob
 * finished, moved) are not in the queue.
 */
export function pbsJobState(state: string): JobState | undefined {
  if (state === 'Q' || state === 'W') return 'pending';
  if (state === 'R') return 'running';
  if (state === 'F' || state === 'X' || state === 'M') return undefined;
  return 'other';
}

/** Why a job is not running, from the scheduler's comment ("Not Running: Insufficient amount of resource: ncpus"). */
export function pbsPendingReason(comment: string): string {
  return comment.replace(/^Not Running:\s*/, '').trim();
}

/** The scheduler's comment says the job can never run as submitted. */
export function pbsNeverRuns(reason: string): boolean {
  return /^Can Never Run\b/i.test(reason);
}

/** OpenPBS's negative `Exit_status` values (`JOB_EXEC_*` of job.h) that name a limit. */
const EXEC_KILLS: Readonly<Record<number, { kind: TerminalKind; what: string }>> = {
  [-24]: { kind: 'FAILED', what: 'used more CPUs than requested (JOB_EXEC_KILL_NCPUS_BURST)' },
  [-25]: { kind: 'FAILED', what: 'used more CPUs than requested (JOB_EXEC_KILL_NCPUS_SUM)' },
  [-26]: { kind: 'OUT_OF_MEMORY', what: 'exceeded its virtual memory limit (JOB_EXEC_KILL_VMEM)' },
  [-27]: { kind: 'OUT_OF_MEMORY', what: 'exceeded its memory limit (JOB_EXEC_KILL_MEM)' },
  [-28]: { kind: 'TIMEOUT', what: 'exceeded its CPU time limit (JOB_EXEC_KILL_CPUT)' },
  [-29]: { kind: 'TIMEOUT', what: 'exceeded its walltime (JOB_EXEC_KILL_WALLTIME)' },
};

/**
 * Why a finished job ended, from `Exit_status`: 0 completed; 1…255 the
 * script's exit status; above 256 killed by signal (status − 256, e.g. 271
 * SIGTERM from qdel); negative: PBS could not run it, or killed it for a
 * limit. Undefined while the job has no `Exit_status`.
 */
export function pbsEnd(job: PbsJob): TerminalReason | undefined {
  const s = job.exitStatus;
  if (s === undefined) return undefined;
  const name = `PBS job ${job.id}`;
  if (s === 0) return { kind: 'COMPLETED', exitCode: 0, detail: `${name} completed with exit code 0` };
  if (s > 0 && s < 256) return { kind: 'FAILED', exitCode: s, detail: `${name} failed with exit code ${s}` };
  if (s >= 256) {
    const signal = s - 256;
    return { kind: signal === 15 || signal === 9 ? 'CANCELLED' : 'FAILED', detail: `${name} was killed by signal ${signal}` };
  }
  const kill = EXEC_KILLS[s];
  if (kill) {
    const limit = kill.kind === 'OUT_OF_MEMORY' && job.mem ? ` (requested ${job.mem})` : kill.kind === 'TIMEOUT' && job.walltime ? ` (walltime ${job.walltime})` : '';
    return { kind: kill.kind, detail: `${name} ${kill.what}${limit}` };
  }
  return { kind: 'NODE_FAIL', detail: `${name} could not be run by PBS (Exit_status ${s})` };
}
