/**
 * The Grid Engine adapter's pure parts, on output captured from Son of Grid
 * Engine 8.1.9: qstat -xml, qacct, qsub, qdel and qalter answers.
 */
import { describe, expect, it } from '@jest/globals';
import type { Container } from '../../../src/types.js';
import type { QueueJob, RunResult } from '../../../src/runners/batch/adapter.js';
import { expandTemplates, templateValues } from '../../../src/runners/batch/template.js';
import { DEFAULT_QSUB_ARGUMENTS, SGE_TEMPLATE_RULES, SgeAdapter } from '../../../src/runners/batch/sge/adapter.js';
import { QstatParseError, parseQstatXml } from '../../../src/runners/batch/sge/qstat.js';
import { parseQacct, parseSgeMemory, sgeEnd } from '../../../src/runners/batch/sge/qacct.js';
import { classifySge, parseQsubJobId, qdelOnlyGone } from '../../../src/runners/batch/sge/output.js';
import { TestClock } from '../../../src/testing/clock.js';

const QSTAT = `<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>1</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_priority>-10</JB_priority>
      <JB_name>zzzzz-dz642-runningcontaine</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-29T15:36:16</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>5</JB_job_number>
      <JB_priority>0</JB_priority>
      <JB_name>not-a-container &amp; other</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <queue_name>all.q@vm</queue_name>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>2</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_priority>0</JB_priority>
      <JB_name>zzzzz-dz642-pendingcontaine</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-29T15:36:16</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number>
      <JB_priority>-20</JB_priority>
      <JB_name>zzzzz-dz642-errorcontainer0</JB_name>
      <JB_owner>root</JB_owner>
      <state>Eqw</state>
      <queue_name/>
    </job_list>
  </job_info>
</job_info>
`;

const QACCT = `==============================================================
qname        all.q
hostname     vm
owner        root
jobname      zzzzz-dz642-runningcontaine
jobnumber    1
failed       0
exit_status  3
ru_wallclock 3s
maxvmem      3.406MB
category     -l h_rt=60,h_vmem=1G
`;

function ctr(fields: Partial<Container>): Container {
  return { uuid: 'zzzzz-dz642-queuedcontainer', state: 'Locked', priority: 1, locked_by_uuid: null, ...fields };
}
function result(fields: Partial<RunResult>): RunResult {
  return { code: 0, signal: null, stdout: '', stderr: '', ...fields };
}

describe('qstat -xml', () => {
  it('lists our jobs with state, priority as -p, nice as its negation, and the node', () => {
    const jobs = new SgeAdapter({ user: 'root' }).parseQueue(QSTAT);
    expect(jobs).toEqual([
      { jobId: '1', name: 'zzzzz-dz642-runningcontaine', state: 'running', rawState: 'r', priority: 1014, nice: 10, pendingReason: '', nodes: 'vm' },
      { jobId: '2', name: 'zzzzz-dz642-pendingcontaine', state: 'pending', rawState: 'qw', priority: 1024, nice: 0, pendingReason: 'waiting for a slot' },
      { jobId: '3', name: 'zzzzz-dz642-errorcontainer0', state: 'pending', rawState: 'Eqw', priority: 1004, nice: 20, pendingReason: 'job in error state (Eqw)' },
    ]);
  });

  it('reads an empty queue and refuses anything that is not qstat XML', () => {
    expect(parseQstatXml("<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n  </queue_info>\n  <job_info>\n  </job_info>\n</job_info>\n")).toEqual([]);
    expect(() => parseQstatXml('error: commlib error: got select error (Connection refused)')).toThrow(QstatParseError);
    expect(() => parseQstatXml(QSTAT.slice(0, 400))).toThrow(QstatParseError);
  });

  it('reports an entry without a name and skips it', () => {
    const bad: string[] = [];
    const xml = QSTAT.replace('<JB_name>zzzzz-dz642-pendingcontaine</JB_name>', '');
    expect(parseQstatXml(xml, (e) => bad.push(e)).map((j) => j.id)).toEqual(['1', '3']);
    expect(bad).toHaveLength(1);
  });

  it('treats the error state as a reason that never clears', () => {
    const a = new SgeAdapter({ user: 'root' });
    expect(a.neverClears('job in error state (Eqw)')).toBe(true);
    expect(a.neverClears('waiting for a slot')).toBe(false);
    expect(a.neverClears('job on hold (hqw)')).toBe(false);
  });
});

describe('qsub', () => {
  it('submits with -terse, the UUID as name, /bin/sh, no re-run, the environment, then the templates', () => {
    const c = ctr({ scheduling_parameters: { partitions: ['fast', 'slow'], max_run_time: 90 } });
    const args = expandTemplates(DEFAULT_QSUB_ARGUMENTS, templateValues(c), SGE_TEMPLATE_RULES);
    const spec = new SgeAdapter({ user: 'root' }).submit({ uuid: c.uuid, script: '#!/bin/sh\n', args, container: c });
    expect(spec).toEqual({
      command: 'qsub',
      args: ['-terse', '-N', c.uuid, '-S', '/bin/sh', '-r', 'n', '-o', '/tmp/crunch-run.$JOB_ID.out', '-e', '/tmp/crunch-run.$JOB_ID.err', '-q', 'fast,slow', '-l', 'h_rt=0:2:0'],
      input: '#!/bin/sh\n',
    });
  });

  it('drops -q and -l h_rt pairs when the container has no partitions or limit', () => {
    const args = expandTemplates(DEFAULT_QSUB_ARGUMENTS, templateValues(ctr({})), SGE_TEMPLATE_RULES);
    expect(args).toEqual(['-o', '/tmp/crunch-run.$JOB_ID.out', '-e', '/tmp/crunch-run.$JOB_ID.err']);
  });

  it('reads the job id', () => {
    expect(parseQsubJobId('9\n')).toBe('9');
    expect(parseQsubJobId('9.1-3:1\n')).toBe('9');
    expect(parseQsubJobId('Your job 3 ("x") has been submitted\n')).toBe('3');
    expect(parseQsubJobId('')).toBeUndefined();
  });

  it('classifies failures', () => {
    expect(classifySge(result({ code: 1, stderr: 'Unable to run job: job rejected: the requested parallel environment "smp" does not exist.' }), 'submit')).toBe('fatal');
    expect(classifySge(result({ code: 1, stderr: 'Unable to run job: job rejected: Only 10 jobs are allowed per user (10 already).' }), 'submit')).toBe('backpressure');
    expect(classifySge(result({ code: 1, stderr: 'error: commlib error: got select error (Connection refused)\nUnable to run job: unable to send message to qmaster using port 6444 on host "vm": got send error.' }), 'submit')).toBe('transient');
    expect(classifySge(result({ code: 1, stderr: 'Unable to run job: denied: host "vm" is no submit host.' }), 'submit')).toBe('configuration');
    expect(classifySge(Object.assign(new Error('spawn qsub ENOENT'), { code: 'ENOENT' }), 'submit')).toBe('configuration');
  });
});

describe('qdel and qalter', () => {
  it('counts "does not exist" as gone', () => {
    expect(qdelOnlyGone(result({ code: 1, stdout: 'denied: job "99999" does not exist\n' }))).toBe(true);
    expect(qdelOnlyGone(result({ code: 1, stdout: 'root has registered the job 4 for deletion\ndenied: job "7" does not exist\n' }))).toBe(true);
    expect(qdelOnlyGone(result({ code: 1, stdout: 'denied: job "4" is not owned by you\n' }))).toBe(false);
  });

  const job = (jobId: string, p: number): QueueJob => ({ jobId, name: `zzzzz-dz642-${jobId.padStart(15, '0')}`, state: 'pending', rawState: 'qw', priority: p + 1024, nice: 0 - p, pendingReason: '' });

  it('sets -p to the negated nice, within qalter\'s range', () => {
    const a = new SgeAdapter({ user: 'root' });
    expect(a.renice(job('6', 0), 10)).toEqual({ command: 'qalter', args: ['-p', '-10', '6'] });
    expect(a.renice(job('6', 0), 5000).args[1]).toBe('-1023');
  });

  it('stops raising priorities after "must be operator to increase job priority", and still lowers', () => {
    const a = new SgeAdapter({ user: 'nobody' });
    // Wanted order: 2 first (at -10, must rise to 0), then 1 (at 0, must drop).
    const before = a.planPriorities([job('2', -10), job('1', 0)], 10, { mayRaise: true });
    expect(before.map((c) => [c.job.jobId, c.value])).toEqual([['2', 0], ['1', 10]]);
    // The verdict says so; the core keeps it and plans without raises.
    expect(a.classify(result({ code: 1, stdout: 'denied: "nobody" must be operator to increase job priority\n' }), 'renice')).toEqual({ kind: 'fatal', disable: 'raise' });
    expect(a.planPriorities([job('2', -10), job('1', 0)], 10, { mayRaise: false }).map((c) => [c.job.jobId, c.value])).toEqual([['1', 10]]);
  });
});

describe('qacct', () => {
  it('parses a record and maps a plain failure with its exit status', () => {
    const acct = parseQacct(QACCT);
    expect(acct).toMatchObject({ jobnumber: '1', jobname: 'zzzzz-dz642-runningcontaine', failed: '0', exitStatus: '3' });
    expect(sgeEnd(acct!)).toEqual({ kind: 'FAILED', exitCode: 3, message: 'Grid Engine job 1 failed with exit status 3' });
    expect(parseQacct('error: job id 6 not found\n')).toBeUndefined();
  });

  it('maps memory, time limits, deletions and setup failures', () => {
    const base = parseQacct(QACCT)!;
    expect(sgeEnd({ ...base, failed: '100 : assumedly after job', exitStatus: '137', maxvmem: '1.000GB' })).toEqual({
      kind: 'OUT_OF_MEMORY',
      exitCode: 137,
      message: 'Grid Engine job 1 ran out of memory (requested 1.0 GiB, max vmem 1.0 GiB)',
    });
    expect(sgeEnd({ ...base, failed: '100 : assumedly after job', exitStatus: '137', ruWallclock: '61s' }).kind).toBe('TIMEOUT');
    expect(sgeEnd({ ...base, failed: '37  : qmaster enforced h_rt, h_cpu, or h_vmem limit', exitStatus: '137', maxvmem: '1MB' }).kind).toBe('TIMEOUT');
    expect(sgeEnd({ ...base, failed: '100 : assumedly after job', exitStatus: '143' }).kind).toBe('CANCELLED');
    expect(sgeEnd({ ...base, failed: '0', exitStatus: '143' }).kind).toBe('CANCELLED');
    expect(sgeEnd({ ...base, failed: '0', exitStatus: '137', category: '' }).kind).toBe('FAILED');
    expect(sgeEnd({ ...base, failed: '28  : changing into working directory', exitStatus: '0' }).kind).toBe('NODE_FAIL');
    expect(sgeEnd({ ...base, failed: '0', exitStatus: '0' }).kind).toBe('COMPLETED');
    expect(parseSgeMemory('4G')).toBe(4 * 1024 ** 3);
    expect(parseSgeMemory('4g')).toBe(4e9);
  });
});

describe('SgeAdapter.finalState', () => {
  it('asks qacct again after accountingDelay on the runner\'s clock, until the record is written', async () => {
    const clock = new TestClock();
    const asked: number[] = [];
    const a = new SgeAdapter({ user: 'root', accountingAttempts: 3, accountingDelay: 2_000 });
    const exec = (): Promise<RunResult> => {
      asked.push(clock.now());
      const written = asked.length === 3;
      return Promise.resolve({ code: written ? 0 : 1, signal: null, stdout: written ? QACCT : '', stderr: written ? '' : 'error: job id 1 not found\n' });
    };
    const end = a.finalState({ jobId: '1', name: 'zzzzz-dz642-runningcontaine' }, exec, new AbortController().signal, clock);
    await clock.advance(4_000);
    await expect(end).resolves.toMatchObject({ kind: 'FAILED', exitCode: 3 });
    const t0 = asked[0];
    expect(asked.map((t) => t - t0)).toEqual([0, 2_000, 4_000]);
  });
});
