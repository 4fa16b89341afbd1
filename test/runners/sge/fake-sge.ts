// An in-process Grid Engine behind a CommandRunner: qsub, qstat (`-u USER
// -xml -pri` and `-j ID`), qdel, qalter -p, qrls and qacct -j, answering in
// Son of Grid Engine 8.1.9's formats (see sge-adapter.test.ts for captured
// output). One queue, all.q, on this host. Jobs run their scripts on this
// machine through the shared job table (../batch/fake-job-table.ts); without
// -V they get only Grid Engine's job environment. A held job (-h) waits
// until qrls; a job whose -o or -e file cannot be opened goes to the error
// state Eqw and stays there; qdel sends SIGTERM (the terminate_method
// scripts/sge-up.sh sets). Accounting records are written as a job ends;
// `failed` is 100 only for a job that died of a signal.
import { existsSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { basename, dirname } from 'node:path';
import type { CommandRunner, RunOptions, RunResult } from '../../../src/runners/batch/commands.js';
import { FakeJobTable, exitStatus, type TableJob } from '../batch/fake-job-table.js';

/** A Grid Engine job: the table's fields plus Grid Engine's. */
export interface SgeJob extends TableJob {
  /** The `-p` priority, -1023..1024. */
  priority: number;
  /** The resource requests, as accounting's `category` shows them. */
  category: string;
}

const QUEUE = 'all.q';
const WITH_VALUE = new Set(['-N', '-S', '-r', '-o', '-e', '-q', '-l', '-p', '-wd', '-A', '-P', '-M', '-m', '-a', '-j', '-b', '-js']);
const FLAGS = new Set(['-terse', '-h', '-V', '-cwd']);

export class FakeSge {
  readonly table = new FakeJobTable<SgeJob>({ firstId: 1 });
  readonly #user = userInfo().username;
  readonly #host = hostname();

  /** Answers the runner's commands. */
  readonly runner: CommandRunner = (cmd, args, options) => Promise.resolve(this.command(cmd, args, options));

  /** Answers one command at once. */
  command(cmd: string, args: readonly string[], options: RunOptions = {}): RunResult {
    const name = basename(cmd);
    switch (name) {
      case 'qsub':
        return this.#qsub(args, options);
      case 'qstat':
        return args[0] === '-j' ? this.#qstatJob(args[1] ?? '') : this.#qstat(args);
      case 'qdel':
        return this.#qdel(args);
      case 'qalter':
        return this.#qalter(args);
      case 'qrls':
        return this.#qrls(args);
      case 'qacct':
        return this.#qacct(args);
      default:
        return result(127, '', `${name}: not a Grid Engine command\n`);
    }
  }

  /** Kills every job's processes and waits until they are gone. */
  close(): Promise<void> {
    return this.table.close();
  }

  /** qstat's state letters. */
  state(job: SgeJob): string {
    if (job.phase === 'running') return job.killedBy === undefined ? 'r' : 'dr';
    if (job.blocked !== undefined) return 'Eqw';
    return job.held ? 'hqw' : 'qw';
  }

  #qsub(args: readonly string[], options: RunOptions): RunResult {
    const opts = new Map<string, string>();
    const resources: string[] = [];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (FLAGS.has(a)) opts.set(a, '');
      else if (a === '-pe') {
        resources.push(`-pe ${args[i + 1]} ${args[i + 2]}`);
        i += 2;
      } else if (WITH_VALUE.has(a) && i + 1 < args.length) {
        const v = args[++i];
        if (a === '-l') resources.push(`-l ${v}`);
        else opts.set(a, v);
      } else return result(1, '', `error: ERROR! invalid option argument "${a}"\nUsage: qsub [options]\n`);
    }
    const name = opts.get('-N') ?? 'STDIN';
    if (/^\d/.test(name)) return result(1, '', `Unable to run job: denied: "${name}" is not a valid object name (cannot start with a digit)\nExiting.\n`);
    for (const q of (opts.get('-q') ?? '').split(',').filter((x) => x !== '')) {
      if (q.replace(/@.*$/, '') !== QUEUE) return result(1, '', `Unable to run job: Job was rejected because job requests unknown queue "${q}".\nExiting.\n`);
    }
    const priority = Number(opts.get('-p') ?? 0);
    const id = this.table.nextId;
    const path = (p: string | undefined): string | undefined => p?.replaceAll('$JOB_ID', String(id)).replaceAll('$JOB_NAME', name).replaceAll('$USER', this.#user);
    const unopenable = [path(opts.get('-o')), path(opts.get('-e'))].some((p) => p !== undefined && p !== '/dev/null' && !existsSync(dirname(p)));
    const home = options.env?.HOME ?? '/';
    const jobEnv = {
      ...(opts.has('-V') ? options.env : { PATH: '/usr/local/bin:/bin:/usr/bin', HOME: home, USER: this.#user, LOGNAME: this.#user }),
      JOB_ID: String(id),
      JOB_NAME: name,
      QUEUE,
      ENVIRONMENT: 'BATCH',
      SGE_O_WORKDIR: process.cwd(),
    };
    this.table.add({
      name,
      user: this.#user,
      args: [...args],
      script: options.input ?? '',
      env: jobEnv,
      held: opts.has('-h'),
      blocked: unopenable ? 'Eqw' : undefined,
      priority,
      category: [...(opts.has('-q') ? [`-q ${opts.get('-q')}`] : []), ...resources].join(' '),
    });
    return result(0, opts.has('-terse') ? `${id}\n` : `Your job ${id} ("${name}") has been submitted\n`);
  }

  #qstat(args: readonly string[]): RunResult {
    let who = this.#user;
    let xml = false;
    for (let i = 0; i < args.length; i++) {
      if (args[i] === '-u') who = args[++i];
      else if (args[i] === '-xml') xml = true;
      else if (args[i] !== '-pri') return result(1, '', `error: ERROR! invalid option argument "${args[i]}"\n`);
    }
    if (!xml) return result(1, '', 'this stand-in only speaks -xml\n');
    const jobs = this.table.live().filter((j) => who === '*' || j.user === who);
    const entry = (j: SgeJob): string => {
      const running = j.phase === 'running';
      return (
        `    <job_list state="${running ? 'running' : 'pending'}">\n` +
        `      <JB_job_number>${j.id}</JB_job_number>\n` +
        `      <JAT_prio>${running ? '0.55500' : '0.00000'}</JAT_prio>\n` +
        `      <JB_priority>${j.priority}</JB_priority>\n` +
        `      <JB_name>${escapeXml(j.name)}</JB_name>\n` +
        `      <JB_owner>${escapeXml(j.user)}</JB_owner>\n` +
        `      <state>${this.state(j)}</state>\n` +
        (running ? `      <JAT_start_time>${isoTime(j.startedAt)}</JAT_start_time>\n` : `      <JB_submission_time>${isoTime(j.submittedAt)}</JB_submission_time>\n`) +
        `      <queue_name>${running ? `${QUEUE}@${escapeXml(this.#host)}` : ''}</queue_name>\n` +
        `      <slots>1</slots>\n` +
        `    </job_list>\n`
      );
    };
    const running = jobs.filter((j) => j.phase === 'running').map(entry).join('');
    const pending = jobs.filter((j) => j.phase === 'pending').map(entry).join('');
    return result(
      0,
      `<?xml version='1.0'?>\n<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">\n` +
        `  <queue_info>\n${running}  </queue_info>\n  <job_info>\n${pending}  </job_info>\n</job_info>\n`,
    );
  }

  #qstatJob(id: string): RunResult {
    const job = this.#liveJob(id);
    if (!job) return result(1, '', `Following jobs do not exist or permissions are not sufficient: \n${id}\n`);
    return result(
      0,
      '==============================================================\n' +
        `job_number:                 ${job.id}\n` +
        `owner:                      ${job.user}\n` +
        `job_name:                   ${job.name}\n` +
        `priority:                   ${job.priority}\n` +
        `hard_queue_list:            ${QUEUE}\n`,
    );
  }

  #qdel(args: readonly string[]): RunResult {
    let code = 0;
    let stdout = '';
    for (const id of args) {
      const job = this.#liveJob(id);
      if (!job) {
        stdout += `denied: job "${id}" does not exist\n`;
        code = 1;
      } else if (job.killedBy !== undefined) {
        stdout += `${this.#user} has registered the job ${id} for deletion\n`;
      } else {
        const running = job.phase === 'running';
        this.table.kill(job, this.#user);
        stdout += running ? `${this.#user} has registered the job ${id} for deletion\n` : `${this.#user} has deleted job ${id}\n`;
      }
    }
    return result(code, stdout);
  }

  #qalter(args: readonly string[]): RunResult {
    if (args.length !== 3 || args[0] !== '-p' || !/^-?\d+$/.test(args[1])) return result(1, '', 'qalter: this stand-in takes only -p N JOBID\n');
    const p = Number(args[1]);
    if (p < -1023 || p > 1024) return result(1, '', `denied: priority ${p} out of range\n`);
    const job = this.#liveJob(args[2]);
    if (!job) return result(1, `denied: job "${args[2]}" does not exist\n`);
    job.priority = p;
    return result(0, `${this.#user}@${this.#host} sets priority of job ${job.id} to ${p}\n`);
  }

  #qrls(args: readonly string[]): RunResult {
    let stdout = '';
    for (const id of args) {
      const job = this.#liveJob(id);
      if (!job) return result(1, `denied: job "${id}" does not exist\n`);
      this.table.release(job);
      stdout += `modified hold of job ${id}\n`;
    }
    return result(0, stdout);
  }

  #qacct(args: readonly string[]): RunResult {
    const id = args[0] === '-j' ? args[1] ?? '' : '';
    const job = /^\d+$/.test(id) ? this.table.jobs.get(Number(id)) : undefined;
    // A job deleted before it ran never gets a record.
    if (!job || job.phase !== 'ended' || job.exit === undefined || job.startedAt === undefined) return result(1, '', `error: job id ${id} not found\n`);
    const wall = Math.max(0, Math.round(((job.endedAt ?? 0) - job.startedAt) / 1000));
    // Grid Engine writes failed 100 ("assumedly after job") for a job that
    // died of a signal (qdel's, a limit's, anyone's). One whose script exited
    // by itself gets failed 0, even after a qdel: the runner deletes a
    // finished container's job that is still listed, and the stub crunch-run,
    // done by then, ignores the SIGTERM and exits 0.
    return result(
      0,
      '==============================================================\n' +
        `qname        ${QUEUE}\n` +
        `hostname     ${this.#host}\n` +
        `owner        ${job.user}\n` +
        `jobname      ${job.name}\n` +
        `jobnumber    ${job.id}\n` +
        `failed       ${job.exit.signal !== null ? '100 : assumedly after job' : '0'}\n` +
        `exit_status  ${exitStatus(job.exit)}\n` +
        `ru_wallclock ${wall}s\n` +
        `maxvmem      3.406MB\n` +
        `category     ${job.category}\n`,
    );
  }

  #liveJob(id: string): SgeJob | undefined {
    const job = /^\d+$/.test(id) ? this.table.jobs.get(Number(id)) : undefined;
    return job && job.phase !== 'ended' ? job : undefined;
  }
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' }[c] ?? ''};`);
}

function isoTime(ms: number | undefined): string {
  return new Date(ms ?? 0).toISOString().slice(0, 19);
}

function result(code: number, stdout: string, stderr = ''): RunResult {
  return { code, signal: null, stdout, stderr };
}
