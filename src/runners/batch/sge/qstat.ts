/**
 * Grid Engine's queue as `qstat -u <user> -xml -pri` reports it.
 *
 * The XML is flat and fixed (`<job_info><queue_info><job_list state=…>` for
 * jobs that hold slots, `<job_info><job_info><job_list …>` for pending ones,
 * one text element per field), so a strict reader of exactly that shape is
 * enough and needs no XML library. Anything else is rejected as a whole: a
 * query we cannot read says nothing about which jobs exist.
 *
 * @module
 */
import { isContainerUuid } from '../../../uuid.js';
import { containerOfJob } from './name.js';

/** One of our jobs in qstat's output. */
export interface SgeJob {
  /** Job number (`JB_job_number`). */
  id: string;
  /** The container UUID the job name (`JB_name`) stands for. */
  name: string;
  /** Owner (`JB_owner`). */
  owner: string;
  /** State letters (`state`), e.g. `qw`, `hqw`, `r`, `dr`, `Eqw`, `t`, `s`. */
  state: string;
  /** The `-p` priority (`JB_priority`, present with `-pri`), -1023..1024. */
  priority: number | undefined;
  /** `all.q@host` for a job holding slots; empty while pending. */
  queue: string;
}

/** qstat's output was not the XML this module reads. */
export class QstatParseError extends Error {
  override name = 'QstatParseError';
}

const ENTITY = /&(?:(amp|lt|gt|quot|apos)|#(\d+)|#x([0-9a-fA-F]+));/g;
const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decode(text: string): string {
  return text.replace(ENTITY, (_m, name: string | undefined, dec: string | undefined, hex: string | undefined) => {
    if (name) return NAMED[name];
    const code = dec !== undefined ? Number(dec) : parseInt(hex ?? '', 16);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : '';
  });
}

const JOB_LIST = /<job_list\s+state="(running|pending|zombie)"\s*>([\s\S]*?)<\/job_list>/g;
const FIELD = /<([A-Za-z_]+)>([^<]*)<\/\1>|<([A-Za-z_]+)\s*\/>/g;
const INTEGER = /^-?\d+$/;

/** Does this priority look like one of qstat's `-pri` values? */
function parsePriority(text: string | undefined): number | undefined {
  if (text === undefined || !INTEGER.test(text)) return undefined;
  return Number(text);
}

/**
 * Reads `qstat -u <user> -xml -pri` output into our jobs (several jobs may
 * share a name: the caller sees them all). Jobs whose
 * name is not a container UUID are skipped (they are not ours to follow); an
 * entry without a number, name or state goes to `onBadLine` and is skipped.
 * Output that is not qstat's XML at all is an error.
 *
 * @throws QstatParseError when the output cannot be trusted.
 */
export function parseQstatXml(xml: string, onBadLine?: (entry: string) => void): SgeJob[] {
  const text = xml.trim();
  // An empty queue is still a document: `<job_info><queue_info/><job_info/></job_info>`.
  if (!text.startsWith('<?xml') || !/<job_info\b/.test(text) || !/<\/job_info>\s*$/.test(text)) {
    throw new QstatParseError(`qstat -xml printed something else: ${JSON.stringify(text.slice(0, 120))}`);
  }
  const jobs: SgeJob[] = [];
  for (const m of text.matchAll(JOB_LIST)) {
    const fields = new Map<string, string>();
    for (const f of m[2].matchAll(FIELD)) {
      if (f[1] !== undefined) fields.set(f[1], decode(f[2]));
      else fields.set(f[3], '');
    }
    const id = fields.get('JB_job_number');
    const name = fields.get('JB_name');
    const state = fields.get('state');
    if (id === undefined || !/^\d+$/.test(id) || name === undefined || !state) {
      onBadLine?.(m[0]);
      continue;
    }
    const uuid = containerOfJob(name);
    if (!isContainerUuid(uuid)) continue;
    const job: SgeJob = {
      id,
      name: uuid,
      owner: fields.get('JB_owner') ?? '',
      state,
      priority: parsePriority(fields.get('JB_priority')),
      queue: fields.get('queue_name') ?? '',
    };
    jobs.push(job);
  }
  return jobs;
}

/** The job holds slots on a host (running, transferring or suspended there). */
export function isRunningState(state: string): boolean {
  return /[rtsSTR]/.test(state.replace(/^E/, '')) && !/q/.test(state);
}

/** The job waits for slots (`qw`, held `hqw`, error `Eqw`, re-queued `Rq`). */
export function isPendingState(state: string): boolean {
  return state.includes('q') && !state.includes('d');
}

/**
 * Why a pending job waits, as a short phrase, or `undefined` when it simply
 * waits for a slot. The error state `E` never clears by itself: Grid Engine
 * sets it when a job could not be started (bad working directory, missing
 * shell, failed prolog) and leaves it for an operator.
 */
export function pendingReason(job: Pick<SgeJob, 'state'>): { reason: string; permanent: boolean } | undefined {
  const { state } = job;
  if (state.includes('d')) return undefined;
  if (state.includes('E')) return { reason: `job in error state (${state})`, permanent: true };
  if (state.includes('h')) return { reason: `job on hold (${state})`, permanent: false };
  if (state.includes('q')) return { reason: 'waiting for a slot', permanent: false };
  return undefined;
}
