/**
 * The PBS adapter's pure parts, on OpenPBS 23.06's output formats: qsub's
 * job id, `qstat -f -F json` (with and without -x), qdel's answers, failure
 * classes, priorities, pending and terminal reasons.
 */
import { describe, expect, it } from '@jest/globals';
import type { QueueJob, RunResult } from '../../../src/runners/batch/adapter.js';
import { CommandTimeoutError } from '../../../src/runners/batch/commands.js';
import { PbsAdapter, QstatJsonParseError, classifyPbs, parsePbsJobId, parseQstatJson, pbsEnd } from '../../../src/runners/batch/pbs/index.js';
import { qdelOnlyGone } from '../../../src/runners/batch/pbs/output.js';

const result = (r: Partial<RunResult>): RunResult => ({ code: 0, signal: null, stdout: '', stderr: '', ...r });
const U1 = 'zzzzz-dz642-000000000000001';
const U2 = 'zzzzz-dz642-000000000000002';

// As `qstat -f -F json` prints it (attributes the adapter does not read trimmed).
const QSTAT = JSON.stringify({
  timestamp: 1733550000,
  pbs_version: '23.06.06',
  pbs_server: 'pbs1',
  Jobs: {
    '101.pbs1': { Job_Name: U1, Job_Owner: 'crunch@submit1', job_state: 'R', queue: 'workq', Priority: 0, exec_host: 'node1/0*2+node2/0', comment: 'Job run at Mon Dec 07 at 06:00 on (node1:ncpus=2)+(node2:ncpus=1)', Resource_List: { mem: '64mb', ncpus: 3 } },
    '102.pbs1': { Job_Name: U2, job_state: 'Q', queue: 'workq', Priority: -10, comment: 'Not Running: Insufficient amount of resource: ncpus (R: 64 A: 8 T: 8)' },
    '103.pbs1': { Job_Name: 'someone-elses-job', job_state: 'H', queue: 'workq', Priority: 0 },
    '104[].pbs1': { Job_Name: 'array', job_state: 'B', queue: 'workq' },
    '105.pbs1': { Job_Name: 'x', job_state: 'running' },
  },
});

describe('qsub and qstat -f -F json', () => {
  it('reads the job id qsub prints', () => {
    expect(parsePbsJobId('123.pbs1\n')).toBe('123.pbs1');
    expect(parsePbsJobId('124[].pbs1.example.org\n')).toBe('124[].pbs1.example.org');
    expect(parsePbsJobId('qsub: Unknown queue\n')).toBeUndefined();
  });

  it('reads jobs, states, priorities, reasons and hosts; a malformed entry goes to onBadLine', () => {
    const bad: string[] = [];
    const jobs = new PbsAdapter().parseQueue(QSTAT, (l) => bad.push(l));
    expect(bad).toEqual(['105.pbs1']);
    const byId = new Map(jobs.map((j) => [j.jobId, j]));
    expect(byId.get('101.pbs1')).toMatchObject({ name: U1, state: 'running', rawState: 'R', nodes: 'node1,node2', pendingReason: '' });
    expect(byId.get('102.pbs1')).toMatchObject({ name: U2, state: 'pending', pendingReason: 'Insufficient amount of resource: ncpus (R: 64 A: 8 T: 8)' });
    // Priority -10 shifted into the core's positive range (0 means held there).
    expect(byId.get('102.pbs1')?.priority).toBe(-10 + 1025);
    expect(byId.get('103.pbs1')).toMatchObject({ state: 'other' });
  });

  it('answers no jobs without a "Jobs" key, and refuses what is not the document', () => {
    expect(parseQstatJson('{"timestamp":1,"pbs_version":"23.06.06","pbs_server":"pbs1"}')).toEqual([]);
    expect(() => parseQstatJson('qstat: cannot connect to server pbs1 (errno=111)')).toThrow(QstatJsonParseError);
    expect(() => parseQstatJson('{"Jobs":[]}')).toThrow(QstatJsonParseError);
  });

  it('leaves finished and moved jobs (qstat -x) out of the queue', () => {
    const doc = JSON.stringify({ Jobs: { '1.s': { Job_Name: U1, job_state: 'F', Exit_status: 0 }, '2.s': { Job_Name: U2, job_state: 'M' } } });
    expect(new PbsAdapter().parseQueue(doc)).toEqual([]);
  });
});

describe('commands', () => {
  const job = (jobId: string, priority: number, state: QueueJob['state'] = 'pending'): QueueJob => ({ jobId, name: U1, state, rawState: 'Q', priority: priority + 1025, nice: 0, pendingReason: '' });

  it('submits with -N <uuid> -r n and the arguments the core expanded, the script on stdin, never -V', () => {
    const spec = new PbsAdapter().submit({ uuid: U1, script: '#!/bin/sh\n', args: ['-q', 'workq', '-l', 'select=1:ncpus=2:mem=100mb'], container: { uuid: U1, state: 'Locked', priority: 1, locked_by_uuid: null } });
    expect(spec).toEqual({ command: 'qsub', args: ['-N', U1, '-r', 'n', '-q', 'workq', '-l', 'select=1:ncpus=2:mem=100mb'], input: '#!/bin/sh\n' });
  });

  it('queries every job with qstat -f -F json, and the history with -x for one', () => {
    expect(new PbsAdapter().queueQuery()).toEqual({ command: 'qstat', args: ['-f', '-F', 'json'] });
  });

  it('deletes with one qdel; "Unknown Job Id" and "Job has finished" count as gone, nothing else', () => {
    expect(new PbsAdapter().cancel([job('1.s', 0), job('2.s', 0, 'running')])).toEqual([{ command: 'qdel', args: ['1.s', '2.s'] }]);
    expect(new PbsAdapter().cancel([])).toEqual([]);
    expect(qdelOnlyGone(result({ code: 153, stderr: 'qdel: Unknown Job Id 1.s\n' }))).toBe(true);
    expect(qdelOnlyGone(result({ code: 35, stderr: 'qdel: Job has finished 1.s\nqdel: Unknown Job Id 2.s\n' }))).toBe(true);
    expect(qdelOnlyGone(result({ code: 159, stderr: 'qdel: Unauthorized Request  1.s\n' }))).toBe(false);
  });

  it('orders pending jobs with qalter -p, counting down from 1023 within -1024..1023', () => {
    const a = new PbsAdapter();
    const changes = a.planPriorities([job('1.s', 1023), job('2.s', 0), job('3.s', 0)], 10);
    expect(changes.map((c) => [c.job.jobId, c.value])).toEqual([['2.s', 1013], ['3.s', 1003]]);
    expect(a.renice(job('2.s', 0), 1013)).toEqual({ command: 'qalter', args: ['-p', '1013', '2.s'] });
    expect(a.renice(job('2.s', 0), 5000).args[1]).toBe('1023');
    expect(a.renice(job('2.s', 0), -5000).args[1]).toBe('-1024');
    const many = Array.from({ length: 300 }, (_, i) => job(`${i}.s`, 0));
    expect(Math.min(...a.planPriorities(many, 10).map((c) => c.value))).toBe(-1024);
    expect(new PbsAdapter({ reprioritise: false }).planPriorities([job('1.s', 0), job('2.s', 0)], 10)).toEqual([]);
  });

  it('classifies failures, changing nothing', () => {
    const enoent = Object.assign(new Error('spawn qsub ENOENT'), { code: 'ENOENT' });
    expect(classifyPbs(enoent, 'submit')).toBe('configuration');
    expect(classifyPbs(new CommandTimeoutError('qsub', [], 1, { stdout: '', stderr: '' }), 'submit')).toBe('transient');
    expect(classifyPbs(result({ code: 1, stderr: 'qsub: cannot connect to server pbs1 (errno=111)' }), 'submit')).toBe('transient');
    expect(classifyPbs(result({ code: 1, stderr: 'qsub: Unauthorized Request' }), 'submit')).toBe('configuration');
    expect(classifyPbs(result({ code: 1, stderr: "qsub: would exceed queue workq's per-user limit of jobs in 'Q' state" }), 'submit')).toBe('backpressure');
    expect(classifyPbs(result({ code: 1, stderr: 'qsub: Unknown queue' }), 'submit')).toBe('fatal');
    expect(classifyPbs(result({ code: 1, stderr: 'qdel: something odd' }), 'cancel')).toBe('transient');
  });

  it('cancels only on "Can Never Run"', () => {
    const a = new PbsAdapter();
    expect(a.neverClears('Can Never Run: Insufficient amount of resource: ncpus (R: 64 A: 8 T: 8)')).toBe(true);
    expect(a.neverClears('Insufficient amount of resource: ncpus (R: 64 A: 8 T: 8)')).toBe(false);
  });
});

describe('terminal reasons from Exit_status (qstat -x)', () => {
  const ended = (exitStatus: number, extra: object = {}) => ({ id: '7.pbs1', name: U1, state: 'F', priority: 0, comment: '', exitStatus, ...extra });

  it('reads completions, failures, signals and the JOB_EXEC_KILL_* limits', () => {
    expect(pbsEnd(ended(0))).toMatchObject({ kind: 'COMPLETED', exitCode: 0 });
    expect(pbsEnd(ended(3))).toMatchObject({ kind: 'FAILED', exitCode: 3, detail: 'PBS job 7.pbs1 failed with exit code 3' });
    expect(pbsEnd(ended(271))).toMatchObject({ kind: 'CANCELLED', detail: 'PBS job 7.pbs1 was killed by signal 15' });
    expect(pbsEnd(ended(-27, { mem: '4gb' }))).toMatchObject({ kind: 'OUT_OF_MEMORY', detail: 'PBS job 7.pbs1 exceeded its memory limit (JOB_EXEC_KILL_MEM) (requested 4gb)' });
    expect(pbsEnd(ended(-29, { walltime: '01:00:00' }))).toMatchObject({ kind: 'TIMEOUT', detail: 'PBS job 7.pbs1 exceeded its walltime (JOB_EXEC_KILL_WALLTIME) (walltime 01:00:00)' });
    expect(pbsEnd(ended(-1))).toMatchObject({ kind: 'NODE_FAIL' });
    expect(pbsEnd({ id: '7.pbs1', name: U1, state: 'R', priority: 0, comment: '' })).toBeUndefined();
  });
});
