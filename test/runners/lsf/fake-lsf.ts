// An in-process LSF behind a CommandRunner: bsub, bjobs, bkill and bmod (and
// `sudo -E -u USER`, which only changes the recorded user), answering in IBM
// Spectrum LSF 10.1's formats as the process stubs in ./bin do (the spawned
// CLI tests use those through PATH). Jobs run their scripts on this machine
// through the shared job table (../batch/fake-job-table.ts), in the
// environment bsub was given, as LSF passes the submission environment on.
// A job submitted with `-b TIME` waits until killed (no clock is kept);
// `table.paused` keeps new jobs pending; `pendReason` overrides PEND_REASON.
import { basename } from 'node:path';
import { userInfo } from 'node:os';
import type { CommandRunner, RunOptions, RunResult } from '../../../src/runners/batch/commands.js';
import { FakeJobTable, exitStatus, type TableJob } from '../batch/fake-job-table.js';

/** An LSF job: the table's fields plus LSF's. */
export interface LsfJob extends TableJob {
  queue: string;
  /** The user-assigned priority (bmod -sp). */
  priority: number;
}

/** One command as the stand-in saw it, with the user it ran as. */
export interface LsfCall {
  command: string;
  args: readonly string[];
  user: string;
}

const FINISHED = new Set(['DONE', 'EXIT']);

export class FakeLsf {
  readonly table = new FakeJobTable<LsfJob>();
  /** Every bsub/bjobs/bkill/bmod, in order. */
  readonly calls: LsfCall[] = [];
  /** PEND_REASON of pending jobs, when set. */
  pendReason: string | undefined;
  readonly #user = userInfo().username;

  /** Answers the runner's commands. */
  readonly runner: CommandRunner = (cmd, args, options) => Promise.resolve(this.command(cmd, args, options));

  /** Answers one command at once (as `user`). */
  command(cmd: string, args: readonly string[], options: RunOptions = {}, user = this.#user): RunResult {
    const name = basename(cmd);
    if (name === 'sudo') {
      if (args[0] !== '-E' || args[1] !== '-u' || !args[2] || !args[3]) return result(1, '', 'sudo stub: usage: sudo -E -u USER COMMAND [ARG...]\n');
      return this.command(args[3], args.slice(4), options, args[2]);
    }
    this.calls.push({ command: name, args: [...args], user });
    switch (name) {
      case 'bsub':
        return this.#bsub(args, options, user);
      case 'bjobs':
        return this.#bjobs(args);
      case 'bkill':
        return this.#bkill(args, user);
      case 'bmod':
        return this.#bmod(args);
      default:
        return result(127, '', `${name}: not an LSF command\n`);
    }
  }

  /** Kills every job's processes and waits until they are gone. */
  close(): Promise<void> {
    return this.table.close();
  }

  /**
   * RUN, PEND, DONE or EXIT. As in LSF, the exit status decides: a job whose
   * script exited 0 is DONE even after a `bkill` (e.g. it had finished its
   * work and caught the signal); one killed before it started is EXIT.
   */
  stat(job: LsfJob): string {
    if (job.phase === 'pending') return 'PEND';
    if (job.phase === 'running') return 'RUN';
    return job.exit?.code === 0 ? 'DONE' : 'EXIT';
  }

  #bsub(args: readonly string[], options: RunOptions, user: string): RunResult {
    for (let i = 0; i < args.length; i += 2) {
      if (!args[i].startsWith('-')) return result(255, '', `${args[i]}: bsub: the command must come on stdin in these tests. Job not submitted.\n`);
    }
    const j = args.indexOf('-J');
    const name = j >= 0 ? args[j + 1] : 'NONAME';
    const id = this.table.nextId;
    this.table.add({
      name,
      user,
      args: [...args],
      script: options.input ?? '',
      env: { ...options.env, LSB_JOBID: String(id), LSB_JOBNAME: name },
      queue: 'normal',
      // As with MAX_USER_PRIORITY=100 in lsb.params: jobs start at half of it.
      priority: 50,
      held: args.includes('-b'),
    });
    return result(0, `Job <${id}> is submitted to default queue <normal>.\n`);
  }

  #field(job: LsfJob, field: string): string {
    const stat = this.stat(job);
    switch (field) {
      case 'JOBID':
        return String(job.id);
      case 'STAT':
        return stat;
      case 'USER':
        return job.user;
      case 'QUEUE':
        return job.queue;
      case 'JOB_NAME':
        return job.name;
      case 'PEND_REASON':
        if (stat !== 'PEND') return '';
        return this.pendReason ?? (job.held ? 'The job has a specified start time;' : 'New job is waiting for scheduling;');
      case 'JOB_PRIORITY':
        return String(job.priority);
      case 'EXIT_CODE':
        return FINISHED.has(stat) ? String(job.exit ? exitStatus(job.exit) : 130) : '';
      case 'EXIT_REASON':
        if (stat !== 'EXIT' || job.killedBy === undefined) return '';
        return job.killedBy === 'root' ? 'TERM_ADMIN: job killed by root or LSF administrator' : 'TERM_OWNER: job killed by owner';
      case 'MAX_MEM':
        return '2 Mbytes';
      case 'RUN_TIME':
        return '1 second(s)';
      default:
        return '';
    }
  }

  #bjobs(args: readonly string[]): RunResult {
    let who = this.#user;
    let fields = ['JOBID', 'USER', 'STAT', 'QUEUE', 'JOB_NAME'];
    let json = false;
    let all = false;
    const ids: number[] = [];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a === '-u') who = args[++i];
      else if (a === '-o') fields = args[++i].trim().split(/\s+/).map((s) => s.replace(/:.*$/, '').toUpperCase());
      else if (a === '-json') json = true;
      else if (a === '-a') all = true;
      else if (/^\d+$/.test(a)) ids.push(Number(a));
      else return result(255, '', `${a}: Illegal option\n`);
    }
    if (!json) return result(255, '', 'this stand-in only speaks -json\n');
    const record = (job: LsfJob): Record<string, string> => Object.fromEntries(fields.map((k) => [k, this.#field(job, k)]));
    const shown = (job: LsfJob): boolean => all || !FINISHED.has(this.stat(job));
    const records: Array<Record<string, string>> = [];
    if (ids.length > 0) {
      for (const id of ids) {
        const job = this.table.jobs.get(id);
        records.push(job && shown(job) ? record(job) : { JOBID: String(id), ERROR: `Job <${id}> is not found` });
      }
    } else {
      for (const job of this.table.jobs.values()) if ((who === 'all' || job.user === who) && shown(job)) records.push(record(job));
    }
    return result(0, `${JSON.stringify({ COMMAND: 'bjobs', JOBS: records.length, RECORDS: records }, null, 2)}\n`);
  }

  #bkill(args: readonly string[], user: string): RunResult {
    let code = 0;
    let stdout = '';
    let stderr = '';
    for (const a of args) {
      const job = /^\d+$/.test(a) ? this.table.jobs.get(Number(a)) : undefined;
      if (!job) {
        stderr += `Job <${a}>: No matching job found\n`;
        code = 255;
      } else if (job.phase === 'ended') {
        stderr += `Job <${a}>: Job has already finished\n`;
        code = 255;
      } else {
        // LSF sends SIGINT and SIGTERM, then SIGKILL after JOB_TERMINATE_INTERVAL;
        // crunch-run (and its simulator) stop the same way on SIGTERM.
        this.table.kill(job, user);
        stdout += `Job <${a}> is being terminated\n`;
      }
    }
    return result(code, stdout, stderr);
  }

  #bmod(args: readonly string[]): RunResult {
    if (args.length !== 3 || args[0] !== '-sp' || !/^\d+$/.test(args[1])) return result(255, '', 'Usage: bmod -sp priority jobid (only this form in the stand-in)\n');
    const job = this.table.jobs.get(Number(args[2]));
    if (!job || job.phase === 'ended') return result(255, '', `Job <${args[2]}>: No matching job found\n`);
    job.priority = Number(args[1]);
    return result(0, `Parameters of job <${args[2]}> are being changed\n`);
  }
}

function result(code: number, stdout: string, stderr = ''): RunResult {
  return { code, signal: null, stdout, stderr };
}
