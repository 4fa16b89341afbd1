// A stand-in for OpenPBS's qsub, qstat, qdel and qalter, for the PBS
// adapter's tests: no PBS can run on these machines, and Debian packages none.
// Output formats follow OpenPBS 23.06: qsub prints "<seq>.<server>";
// `qstat -f -F json` prints {"timestamp","pbs_version","pbs_server","Jobs":{…}}
// (no "Jobs" key without jobs; finished jobs only with -x, with Exit_status);
// qdel says "qdel: Unknown Job Id <id>" (exit 153) or "qdel: Job has finished
// <id>" (exit 35); qalter -p takes -1024…1023. Node builtins only.
//
// One implementation, two seams: `pbsCommand()` answers one command
// synchronously (the in-process fake of the integration tier calls it), and
// `main()` is what the qsub/qstat/qdel/qalter scripts in this folder run (the
// system tier puts them first on PATH).
//
// The job table is a directory ($PBS_STUB_DIR):
//   jobs/<seq>.json     {seq, id, name, user, args, queue, priority, pid, killed?}
//   jobs/<seq>.script   the job script (qsub's stdin)
//   jobs/<seq>.started / .exit   written by the job's wrapper (exit status)
//   jobs/<seq>.hold     a job submitted with -a (an execution time): state W until deleted
//   hold                while it exists, new jobs stay queued (Q)
//   comment             the scheduler comment of queued jobs (default "Not Running: …")
//   calls.log           one JSON line per command: {command, args}
//
// A job runs its script with /bin/sh, detached, with PBS's job environment
// (PBS_JOBID, PBS_O_WORKDIR…, PATH=/usr/bin:/bin): without -V nothing of
// qsub's environment reaches it, as with a real PBS.
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';

const SERVER = 'stub-server';
const VERSION = '23.06.06';

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

function writeJson(path, value) {
  writeFileSync(`${path}.tmp${process.pid}`, JSON.stringify(value));
  renameSync(`${path}.tmp${process.pid}`, path);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function table(dir) {
  const jobsDir = join(dir, 'jobs');
  mkdirSync(jobsDir, { recursive: true });
  const base = (job) => join(jobsDir, String(job.seq));
  const all = () =>
    readdirSync(jobsDir)
      .filter((f) => /^\d+\.json$/.test(f))
      .map((f) => readJson(join(jobsDir, f)))
      .filter((j) => j !== undefined)
      .sort((a, b) => a.seq - b.seq);
  const bySeq = (id) => {
    const m = /^(\d+)\.(.+)$/.exec(id);
    if (!m || m[2] !== SERVER) return undefined;
    return readJson(join(jobsDir, `${m[1]}.json`));
  };
  /** Q, W, R, E or F, from the wrapper's files. */
  const state = (job) => {
    const b = base(job);
    if (existsSync(`${b}.exit`)) return 'F';
    const started = existsSync(`${b}.started`);
    if (job.killed) return started && job.pid && alive(job.pid) ? 'E' : 'F';
    if (started) return job.pid && !alive(job.pid) ? 'F' : 'R';
    return existsSync(`${b}.hold`) ? 'W' : 'Q';
  };
  const exitStatus = (job) => {
    const b = base(job);
    const text = existsSync(`${b}.exit`) ? readFileSync(`${b}.exit`, 'utf8').trim() : '';
    if (text !== '') return Number(text);
    // Killed by qdel's SIGTERM: 256 + 15, as PBS reports a signal.
    return job.killed && existsSync(`${b}.started`) ? 271 : undefined;
  };
  return { jobsDir, base, all, bySeq, state, exitStatus };
}

function qsub(dir, args, stdin, env) {
  const t = table(dir);
  const WITH_VALUE = new Set(['-N', '-a', '-q', '-l', '-r', '-j', '-o', '-e', '-p', '-W', '-A', '-P', '-m', '-M', '-S', '-k', '-c']);
  const FLAGS = new Set(['-V', '-h', '-z']);
  const opts = { l: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (FLAGS.has(a)) {
      opts[a.slice(1)] = true;
      continue;
    }
    if (!WITH_VALUE.has(a)) {
      if (!a.startsWith('-')) return { code: 2, stderr: `qsub: this stand-in reads the script from stdin only, got ${a}\n` };
      return { code: 2, stderr: `qsub: invalid option -- '${a.replace(/^-+/, '')}'\nusage: qsub [-a date_time] [-A account_string] ...\n` };
    }
    const v = args[++i];
    if (v === undefined) return { code: 2, stderr: `qsub: option requires an argument -- '${a.slice(1)}'\n` };
    if (a === '-l') opts.l.push(v);
    else opts[a.slice(1)] = v;
  }
  if (opts.q !== undefined && opts.q !== 'workq') return { code: 1, stderr: 'qsub: Unknown queue\n' };
  for (const l of opts.l) {
    for (const part of l.split(/[:,]/)) {
      const name = part.split('=')[0].replace(/^\d+$/, '');
      if (name !== '' && !['select', 'ncpus', 'mem', 'ngpus', 'walltime', 'place', 'host'].includes(name)) {
        return { code: 1, stderr: `qsub: Unknown resource Resource_List.${name}\n` };
      }
      if (name === 'walltime' && !/^walltime=(?:\d+:){0,2}\d+$/.test(part)) return { code: 1, stderr: 'qsub: Illegal attribute or resource value Resource_List.walltime\n' };
    }
  }
  const priority = opts.p === undefined ? 0 : Number(opts.p);
  if (!Number.isInteger(priority) || priority < -1024 || priority > 1023) return { code: 2, stderr: 'qsub: illegal -p value\n' };
  let seq = 100;
  for (;; seq++) {
    try {
      closeSync(openSync(join(t.jobsDir, `${seq}.lock`), 'wx'));
      break;
    } catch {
      // taken
    }
  }
  const id = `${seq}.${SERVER}`;
  const job = { seq, id, name: opts.N ?? 'STDIN', user: env.PBS_STUB_USER || userInfo().username, args, queue: 'workq', priority, select: opts.l.find((l) => l.startsWith('select=')) };
  const b = t.base(job);
  writeFileSync(`${b}.script`, stdin);
  if (opts.a !== undefined) writeFileSync(`${b}.hold`, '');
  const jobEnv = opts.V ? { ...env } : { PATH: '/usr/bin:/bin', HOME: env.HOME ?? '/', PBS_O_HOME: env.HOME ?? '/', PBS_O_PATH: env.PATH ?? '', PBS_O_WORKDIR: process.cwd(), PBS_ENVIRONMENT: 'PBS_BATCH' };
  Object.assign(jobEnv, { PBS_JOBID: id, PBS_JOBNAME: job.name });
  const wrapper =
    'while [ -e "$1/hold" ] || [ -e "$2.hold" ]; do sleep 0.1; done; : > "$2.started"; ' + '/bin/sh "$2.script" > "$2.out" 2>&1; echo $? > "$2.exit"';
  const child = spawn('/bin/sh', ['-c', wrapper, 'pbs-job', dir, b], { detached: true, stdio: 'ignore', env: jobEnv });
  child.unref();
  writeJson(`${b}.json`, { ...job, pid: child.pid });
  return { code: 0, stdout: `${id}\n` };
}

function jobJson(dir, t, job) {
  const s = t.state(job);
  const exit = t.exitStatus(job);
  const comment = existsSync(join(dir, 'comment')) ? readFileSync(join(dir, 'comment'), 'utf8').trim() : 'Not Running: No available resources on nodes';
  return {
    Job_Name: job.name,
    Job_Owner: `${job.user}@${SERVER}`,
    job_state: s,
    queue: job.queue,
    server: SERVER,
    Priority: job.priority,
    Rerunable: job.args.includes('-r') && job.args[job.args.indexOf('-r') + 1] === 'n' ? 'False' : 'True',
    ...(s === 'Q' ? { comment } : s === 'W' ? { comment: 'Not Running: Job is waiting for its execution time' } : {}),
    ...(s === 'R' || s === 'E' ? { exec_host: 'stubnode/0', comment: `Job run at ${new Date(job.seq * 1000).toUTCString()} on (stubnode:ncpus=1)` } : {}),
    ...(s === 'F' && exit !== undefined ? { Exit_status: exit } : {}),
    Resource_List: { ncpus: 1, nodect: 1, ...(job.select ? { select: job.select.slice('select='.length) } : {}) },
  };
}

function qstat(dir, args) {
  const t = table(dir);
  let full = false;
  let json = false;
  let history = false;
  const ids = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-f') full = true;
    else if (a === '-x') history = true;
    else if (a === '-F') json = args[++i] === 'json';
    else if (/^\d+\./.test(a)) ids.push(a);
    else return { code: 2, stderr: `qstat: invalid option -- '${a.replace(/^-+/, '')}'\n` };
  }
  if (!full || !json) return { code: 2, stderr: 'qstat: this stand-in speaks only -f -F json\n' };
  const doc = { timestamp: Math.floor(Date.now() / 1000), pbs_version: VERSION, pbs_server: SERVER };
  const jobs = {};
  let stderr = '';
  let code = 0;
  const list = ids.length ? ids.map((id) => [id, t.bySeq(id)]) : t.all().map((j) => [j.id, j]);
  for (const [id, job] of list) {
    if (!job) {
      stderr += `qstat: Unknown Job Id ${id}\n`;
      code = 153;
      continue;
    }
    if (!history && t.state(job) === 'F') {
      if (ids.length) {
        stderr += `qstat: ${id} Job has finished, use -x or -H to obtain historical job information\n`;
        code = 35;
      }
      continue;
    }
    jobs[id] = jobJson(dir, t, job);
  }
  if (Object.keys(jobs).length) doc.Jobs = jobs;
  return { code, stdout: Object.keys(jobs).length || code === 0 ? `${JSON.stringify(doc, null, 4)}\n` : '', stderr };
}

function qdel(dir, args) {
  const t = table(dir);
  let code = 0;
  let stderr = '';
  for (const id of args) {
    const job = t.bySeq(id);
    if (!job) {
      stderr += `qdel: Unknown Job Id ${id}\n`;
      code = 153;
      continue;
    }
    if (t.state(job) === 'F') {
      stderr += `qdel: Job has finished ${id}\n`;
      code = code || 35;
      continue;
    }
    writeJson(`${t.base(job)}.json`, { ...job, killed: true });
    // SIGTERM to the job's processes; PBS sends SIGKILL after kill_delay.
    try {
      process.kill(-job.pid, 'SIGTERM');
    } catch {
      // gone already
    }
  }
  return { code, stderr };
}

function qalter(dir, args) {
  const t = table(dir);
  if (args.length !== 3 || args[0] !== '-p') return { code: 2, stderr: 'qalter: this stand-in takes only -p N JOBID\n' };
  const p = Number(args[1]);
  if (!/^-?\d+$/.test(args[1]) || p < -1024 || p > 1023) return { code: 2, stderr: 'qalter: illegal -p value\n' };
  const job = t.bySeq(args[2]);
  if (!job) return { code: 153, stderr: `qalter: Unknown Job Id ${args[2]}\n` };
  if (t.state(job) === 'F') return { code: 35, stderr: `qalter: Job has finished ${args[2]}\n` };
  writeJson(`${t.base(job)}.json`, { ...job, priority: p });
  return { code: 0 };
}

/**
 * Answers one PBS command against the job table in `dir`, synchronously:
 * `{code, stdout, stderr}`.
 */
export function pbsCommand(dir, command, args, { stdin = '', env = process.env } = {}) {
  mkdirSync(dir, { recursive: true });
  appendFileSync(join(dir, 'calls.log'), JSON.stringify({ command, args }) + '\n');
  const run = { qsub: () => qsub(dir, args, stdin, env), qstat: () => qstat(dir, args), qdel: () => qdel(dir, args), qalter: () => qalter(dir, args) }[command];
  const r = run ? run() : { code: 127, stderr: `${command}: not a PBS command\n` };
  return { code: r.code, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** The command-line entry of the qsub/qstat/qdel/qalter scripts. */
export function main(command) {
  const dir = process.env.PBS_STUB_DIR;
  if (!dir) {
    process.stderr.write(`${command} stand-in: PBS_STUB_DIR is not set\n`);
    process.exitCode = 2;
    return;
  }
  let stdin = '';
  if (command === 'qsub') {
    try {
      stdin = readFileSync(0, 'utf8');
    } catch {
      // no stdin
    }
  }
  const r = pbsCommand(dir, command, process.argv.slice(2), { stdin });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  process.exitCode = r.code;
}
