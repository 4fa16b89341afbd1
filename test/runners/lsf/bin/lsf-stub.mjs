// A stand-in for IBM Spectrum LSF's bsub, bjobs, bkill and bmod (and a sudo
// that only switches the recorded user), for the LSF adapter's tests: no LSF
// can run on CI machines. Node builtins only.
//
// The job table is a directory, $LSF_STUB_DIR:
//   jobs/<id>.json   one job: {id, name, user, args, queue, submitTime, priority, killed?, exitReason?}
//   jobs/<id>.script the job script (bsub's stdin)
//   jobs/<id>.started / <id>.exit   written by the job's wrapper when it starts / ends (exit status)
//   hold             while it exists, new jobs stay pending (PEND)
//   pend-reason      PEND_REASON shown for pending jobs (default "New job is waiting for scheduling;")
//   fail-<command>   {"stderr", "stdout"?, "code", "count"?, "submit"?}: the next `count` (default 1)
//                    runs of <command> fail like that; with "submit": true, bsub records the job first
//                    (a submission that "failed" but reached the queue)
//   calls.log        one JSON line per run: {command, args, user}
//
// A job runs its script with /bin/sh, detached, in the environment bsub was
// given (as LSF passes the submission environment on), unless held: the
// wrapper waits while `hold` or jobs/<id>.hold exists. A job submitted with
// `-b TIME` (start no earlier than TIME) is held until killed: the stub keeps
// no clock, and tests use it for jobs that must stay pending. Output formats are
// LSF 10.1's: "Job <N> is submitted to default queue <normal>.", bjobs -json
// {"COMMAND":"bjobs","JOBS":n,"RECORDS":[…]}, bkill "Job <N> is being
// terminated" / "Job <N>: Job has already finished" / "Job <N>: No matching
// job found", bmod "Parameters of job <N> are being changed".
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';

const dir = process.env.LSF_STUB_DIR;
const jobsDir = dir ? join(dir, 'jobs') : '';
const user = process.env.LSF_STUB_USER || userInfo().username;

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
function out(text) {
  process.stdout.write(text);
}
function err(text) {
  process.stderr.write(text);
}

/** The injected failure for this command, if one is due (consumed). */
function failure(command) {
  const path = join(dir, `fail-${command}`);
  const f = readJson(path);
  if (!f) return undefined;
  const count = f.count ?? 1;
  if (count <= 1) rmSync(path, { force: true });
  else writeJson(path, { ...f, count: count - 1 });
  return f;
}

function allJobs() {
  if (!existsSync(jobsDir)) return [];
  return readdirSync(jobsDir)
    .filter((f) => /^\d+\.json$/.test(f))
    .map((f) => readJson(join(jobsDir, f)))
    .filter((j) => j !== undefined)
    .sort((a, b) => a.id - b.id);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** RUN, PEND, DONE or EXIT, from the wrapper's files; the exit status decides, as in LSF (exit 0 after a bkill is DONE). */
function stat(job) {
  const base = join(jobsDir, String(job.id));
  if (existsSync(`${base}.exit`)) return readFileSync(`${base}.exit`, 'utf8').trim() === '0' ? 'DONE' : 'EXIT';
  if (job.killed) return job.pid && alive(job.pid) && existsSync(`${base}.started`) ? 'RUN' : 'EXIT';
  if (existsSync(`${base}.started`)) return job.pid && !alive(job.pid) ? 'EXIT' : 'RUN';
  return 'PEND';
}

function exitCode(job) {
  const base = join(jobsDir, String(job.id));
  const text = existsSync(`${base}.exit`) ? readFileSync(`${base}.exit`, 'utf8').trim() : '';
  if (text !== '') return text;
  return job.killed ? '130' : '';
}

function bsub(args) {
  let stdin = '';
  try {
    stdin = readFileSync(0, 'utf8');
  } catch {
    // no stdin
  }
  const f = failure('bsub');
  if (f && !f.submit) {
    if (f.stdout) out(f.stdout);
    err(f.stderr ?? 'Request aborted by esub. Job not submitted.\n');
    return f.code ?? 255;
  }
  for (let i = 0; i < args.length; i++) {
    if (!args[i].startsWith('-')) {
      err(`${args[i]}: bsub: the command must come on stdin in these tests. Job not submitted.\n`);
      return 255;
    }
    i++; // every option the adapter uses takes one value
  }
  const j = args.indexOf('-J');
  const name = j >= 0 ? args[j + 1] : 'NONAME';
  mkdirSync(jobsDir, { recursive: true });
  let id = 100;
  for (;;) {
    try {
      closeSync(openSync(join(jobsDir, `${id}.lock`), 'wx'));
      break;
    } catch {
      id++;
    }
  }
  const base = join(jobsDir, String(id));
  writeFileSync(`${base}.script`, stdin);
  const begin = args.indexOf('-b');
  if (begin >= 0) writeFileSync(`${base}.hold`, '');
  // As with MAX_USER_PRIORITY=100 in lsb.params: jobs start at half of it.
  const job = { id, name, user, args, queue: 'normal', submitTime: Date.now(), priority: 50 };
  // The wrapper waits while held, marks the start, runs the script and
  // records its exit status; detached, so it outlives this bsub.
  const wrapper =
    'while [ -e "$1/hold" ] || [ -e "$2.hold" ]; do sleep 0.1; done; : > "$2.started"; ' +
    '/bin/sh "$2.script" > "$2.out" 2>&1; echo $? > "$2.exit"';
  const env = { ...process.env };
  delete env.LSF_STUB_USER;
  const child = spawn('/bin/sh', ['-c', wrapper, 'lsf-job', dir, base], { detached: true, stdio: 'ignore', env });
  child.unref();
  writeJson(`${base}.json`, { ...job, pid: child.pid });
  if (f) {
    err(f.stderr ?? 'LSF is down. Please wait ...\n');
    return f.code ?? 255;
  }
  out(`Job <${id}> is submitted to default queue <normal>.\n`);
  return 0;
}

const FIELD = {
  JOBID: (j) => String(j.id),
  STAT: (j) => stat(j),
  USER: (j) => j.user,
  QUEUE: (j) => j.queue,
  JOB_NAME: (j) => j.name,
  PEND_REASON: (j) => {
    if (stat(j) !== 'PEND') return '';
    if (existsSync(join(dir, 'pend-reason'))) return readFileSync(join(dir, 'pend-reason'), 'utf8').trim();
    return j.args.includes('-b') ? 'The job has a specified start time;' : 'New job is waiting for scheduling;';
  },
  JOB_PRIORITY: (j) => String(j.priority ?? ''),
  EXIT_CODE: (j) => (['DONE', 'EXIT'].includes(stat(j)) ? exitCode(j) : ''),
  EXIT_REASON: (j) => (stat(j) === 'EXIT' ? j.exitReason ?? (j.killed ? 'TERM_OWNER: job killed by owner' : '') : ''),
  MAX_MEM: (j) => j.maxMem ?? '2 Mbytes',
  MEMLIMIT: (j) => j.memLimit ?? '',
  RUN_TIME: () => '1 second(s)',
  RUNTIMELIMIT: (j) => j.runLimit ?? '',
};

function bjobs(args) {
  const f = failure('bjobs');
  if (f) {
    if (f.stdout) out(f.stdout);
    err(f.stderr ?? 'LSF is down. Please wait ...\n');
    return f.code ?? 255;
  }
  let who = user;
  let fields = ['JOBID', 'USER', 'STAT', 'QUEUE', 'JOB_NAME'];
  let json = false;
  let all = false;
  const ids = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-u') who = args[++i];
    else if (a === '-o') fields = args[++i].trim().split(/\s+/).map((s) => s.replace(/:.*$/, '').toUpperCase());
    else if (a === '-json') json = true;
    else if (a === '-a') all = true;
    else if (/^\d+$/.test(a)) ids.push(Number(a));
    else {
      err(`${a}: Illegal option\n`);
      return 255;
    }
  }
  if (!json) {
    err('this stub only speaks -json\n');
    return 255;
  }
  const records = [];
  const jobs = allJobs();
  if (ids.length > 0) {
    for (const id of ids) {
      const job = jobs.find((j) => j.id === id);
      if (!job || (!all && ['DONE', 'EXIT'].includes(stat(job)))) records.push({ JOBID: String(id), ERROR: `Job <${id}> is not found` });
      else records.push(Object.fromEntries(fields.map((k) => [k, FIELD[k] ? FIELD[k](job) : ''])));
    }
  } else {
    for (const job of jobs) {
      if (who !== 'all' && job.user !== who) continue;
      if (!all && ['DONE', 'EXIT'].includes(stat(job))) continue;
      records.push(Object.fromEntries(fields.map((k) => [k, FIELD[k] ? FIELD[k](job) : ''])));
    }
  }
  out(JSON.stringify({ COMMAND: 'bjobs', JOBS: records.length, RECORDS: records }, null, 2) + '\n');
  return 0;
}

function bkill(args) {
  const f = failure('bkill');
  if (f) {
    if (f.stdout) out(f.stdout);
    err(f.stderr ?? 'LSF is down. Please wait ...\n');
    return f.code ?? 255;
  }
  let status = 0;
  for (const a of args) {
    const id = Number(a);
    const path = join(jobsDir, `${id}.json`);
    const job = /^\d+$/.test(a) ? readJson(path) : undefined;
    if (!job) {
      err(`Job <${a}>: No matching job found\n`);
      status = 255;
      continue;
    }
    const s = stat(job);
    if (s === 'DONE' || s === 'EXIT') {
      err(`Job <${id}>: Job has already finished\n`);
      status = 255;
      continue;
    }
    writeJson(path, { ...job, killed: true, exitReason: job.exitReason ?? `TERM_${user === 'root' ? 'ADMIN' : 'OWNER'}: job killed by ${user === 'root' ? 'root or LSF administrator' : 'owner'}` });
    // LSF sends SIGINT and SIGTERM, then SIGKILL after JOB_TERMINATE_INTERVAL.
    // crunch-run handles both the same way; the test simulator of crunch-run
    // handles SIGTERM, so that is what the job's process group gets here.
    try {
      process.kill(-job.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    out(`Job <${id}> is being terminated\n`);
  }
  return status;
}

function bmod(args) {
  const f = failure('bmod');
  if (f) {
    if (f.stdout) out(f.stdout);
    err(f.stderr ?? 'LSF is down. Please wait ...\n');
    return f.code ?? 255;
  }
  if (args.length !== 3 || args[0] !== '-sp' || !/^\d+$/.test(args[1])) {
    err('Usage: bmod -sp priority jobid (only this form in the stub)\n');
    return 255;
  }
  const path = join(jobsDir, `${args[2]}.json`);
  const job = readJson(path);
  if (!job || ['DONE', 'EXIT'].includes(stat(job))) {
    err(`Job <${args[2]}>: No matching job found\n`);
    return 255;
  }
  writeJson(path, { ...job, priority: Number(args[1]) });
  out(`Parameters of job <${args[2]}> are being changed\n`);
  return 0;
}

/** `sudo -E -u USER CMD ARGS…`: runs CMD with LSF_STUB_USER=USER (and the same environment). */
function sudo(args) {
  if (args[0] !== '-E' || args[1] !== '-u' || !args[2] || !args[3]) {
    err('sudo stub: usage: sudo -E -u USER COMMAND [ARG...]\n');
    return 1;
  }
  const child = spawn(args[3], args.slice(4), { stdio: 'inherit', env: { ...process.env, LSF_STUB_USER: args[2] } });
  return new Promise((resolve) => child.on('close', (code) => resolve(code ?? 1)));
}

export async function main(command) {
  const args = process.argv.slice(2);
  if (!dir) {
    err(`${command} stub: LSF_STUB_DIR is not set\n`);
    process.exitCode = 255;
    return;
  }
  mkdirSync(jobsDir, { recursive: true });
  if (command !== 'sudo') appendFileSync(join(dir, 'calls.log'), JSON.stringify({ command, args, user }) + '\n');
  const run = { bsub, bjobs, bkill, bmod, sudo }[command];
  process.exitCode = await run(args);
}
