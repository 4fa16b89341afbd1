/**
 * The batch behaviours (behaviours.ts) with Grid Engine: a real single-node
 * Son of Grid Engine (scripts/sge-up.sh) running the crunch-run simulator.
 * Skipped, with a warning, where qstat does not answer.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_QSUB_ARGUMENTS, SgeRunner } from '../../../src/runners/batch/sge.js';
import { sgeJobName } from '../../../src/runners/batch/sge-name.js';
import { parseQstatXml } from '../../../src/runners/batch/sge-qstat.js';
import { describeBehaviours, type SeenJob } from './behaviours.js';
import { sgeEnv, sgeUnavailable } from './sge-env.js';

const env = sgeEnv();

function sh(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, input });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

function ours(prefix: string): SeenJob[] {
  return parseQstatXml(sh('qstat', ['-u', '*', '-xml', '-pri']))
    .filter((j) => j.name.startsWith(prefix))
    .map((j) => ({
      id: j.id,
      name: j.name,
      state: /q/.test(j.state) ? 'pending' : /r/.test(j.state) && !/d/.test(j.state) ? 'running' : 'other',
      priority: j.priority ?? 0,
    }));
}

let scratch: string | undefined;
function failingQsub(message: string): string {
  scratch ??= mkdtempSync('/tmp/arvados-dispatch-sge-');
  // Named qsub, so that the tests count it as the submit command.
  const dir = mkdtempSync(join(scratch, 'failing-'));
  const path = join(dir, 'qsub');
  const realQsub = sh('sh', ['-c', 'command -v qsub']).trim();
  writeFileSync(path, `#!/bin/sh\n${realQsub} "$@"\necho "error: commlib error: got select error (Connection reset by peer): ${message}" >&2\nexit 1\n`);
  chmodSync(path, 0o755);
  return path;
}

describeBehaviours({
  name: 'Grid Engine',
  unavailable: sgeUnavailable() && `${sgeUnavailable()}. Run scripts/sge-up.sh as root to enable them`,
  submitCommand: 'qsub',
  stuckReason: /error state \(Eqw\)/,
  runner: (options, how) =>
    new SgeRunner({
      ...options,
      // Held jobs (-h) stay pending until deleted.
      // A job whose output file cannot be opened goes to the error state Eqw.
      qsubArgs: how.stuck ? ['-o', '/nonexistent/arvados-dispatch/out', '-e', '/dev/null'] : [...DEFAULT_QSUB_ARGUMENTS, ...(how.pending ? ['-h'] : [])],
      commands: how.failAfterSubmit ? { qsub: failingQsub(how.failAfterSubmit) } : undefined,
      accountingDelay: 500,
      accountingAttempts: 6,
    }),
  jobs: async (prefix) => ours(prefix),
  remove: async (jobId) => void sh('qdel', [jobId]),
  submitSleep: async (name) => void sh('qsub', ['-terse', '-N', sgeJobName(name), '-S', '/bin/sh', '-o', '/dev/null', '-e', '/dev/null'], 'sleep 600\n'),
  cleanup: async (prefix) => {
    const ids = parseQstatXml(sh('qstat', ['-u', '*', '-xml'])).filter((j) => j.name.startsWith(prefix)).map((j) => j.id);
    if (ids.length) spawnSync('qdel', ids, { env });
  },
});
