/**
 * The Slurm adapter's pure parts: the commands it builds and the outputs it
 * reads (squeue, sbatch, sacct, scontrol show job), and how it words why a
 * job ended.
 */
import { describe, expect, it } from '@jest/globals';
import { SQUEUE_FORMAT, SlurmAdapter, parseSacct, parseSbatchJobId, parseScontrolJob, parseSqueue, slurmBytes, terminalReason } from '../../../src/runners/batch/slurm/adapter.js';

const U0 = 'zzzzz-dz642-queuedcontainer';
const U1 = 'zzzzz-dz642-000000000000001';

describe('SlurmAdapter commands', () => {
  it("queries only this user's jobs, with --all only when asked (issue 14: Go's behaviour as an option)", () => {
    expect(new SlurmAdapter({ squeueUser: 'crunch' }).queueQuery()).toEqual({
      command: 'squeue',
      args: ['--user=crunch', '--noheader', `--format=${SQUEUE_FORMAT}`],
    });
    expect(new SlurmAdapter({ squeueUser: 'crunch', squeueAll: true }).queueQuery().args).toEqual([
      '--all',
      '--user=crunch',
      '--noheader',
      `--format=${SQUEUE_FORMAT}`,
    ]);
  });

  it('submits with the script on stdin, the output directory, and the UUID as job name', () => {
    const a = new SlurmAdapter({ jobOutputDir: '/var/log/crunch%dir/' });
    const spec = a.submit({ uuid: U0, script: '#!/bin/sh\nexec true\n', args: ['--mem=5'], container: { uuid: U0, state: 'Locked', priority: 1, locked_by_uuid: null } });
    expect(spec).toEqual({
      command: 'sbatch',
      args: ['--nice=10000', '--no-requeue', '--chdir=/var/log/crunch%dir', '--output=/var/log/crunch%%dir/crunch-run-%x-%j.out', '--mem=5', `--job-name=${U0}`],
      input: '#!/bin/sh\nexec true\n',
    });
  });

  it('renices by job id, and reads "already gone" from scancel', () => {
    const a = new SlurmAdapter();
    const job = parseSqueue(`42|${U0}|10000|100|PENDING||Priority\n`)[0];
    expect(a.renice(job, 7)).toEqual({ command: 'scontrol', args: ['update', 'JobId=42', 'Nice=7'] });
    const gone = { code: 1, signal: null, stdout: '', stderr: 'scancel: error: Kill job error on job id 42: Invalid job id specified\n' };
    expect(a.cancelGone(gone)).toBe(true);
    expect(a.cancelGone({ ...gone, stderr: 'scancel: error: Unable to contact slurm controller\n' })).toBe(false);
  });

  it('knows the pending reasons that never clear', () => {
    const a = new SlurmAdapter();
    for (const r of ['PartitionConfig', 'BadConstraints', 'QOSMaxCpuPerJobLimit', 'PartitionTimeLimit']) expect(a.neverClears(r)).toBe(true);
    for (const r of ['Priority', 'Resources', 'QOSMaxJobsPerUserLimit', 'ReqNodeNotAvail, UnavailableNodes:n1', 'BeginTime']) expect(a.neverClears(r)).toBe(false);
  });
});

describe('parseSqueue', () => {
  it('parses id, name, nice, priority, state, nodes and a reason with spaces', () => {
    const jobs = parseSqueue(`7|${U0}|10000|4294901659|PENDING||None\n8|${U1}|-5|12|PENDING||ReqNodeNotAvail, UnavailableNodes:compute[1-2]\n9|${U1}|0|5|RUNNING|node1|None\n`);
    expect(jobs).toEqual([
      { jobId: '7', name: U0, nice: 10000, priority: 4294901659, state: 'pending', rawState: 'PENDING', pendingReason: '' },
      { jobId: '8', name: U1, nice: -5, priority: 12, state: 'pending', rawState: 'PENDING', pendingReason: 'ReqNodeNotAvail, UnavailableNodes:compute[1-2]' },
      { jobId: '9', name: U1, nice: 0, priority: 5, state: 'running', rawState: 'RUNNING', pendingReason: '', nodes: 'node1' },
    ]);
  });

  it('skips jobs that are not containers, and reports malformed lines of containers', () => {
    const bad: string[] = [];
    const jobs = parseSqueue(`1|a name|0|1|RUNNING||None\n2|slurm-job|0|1|RUNNING||None\n\n3|${U0}|x|1|RUNNING||None\n${U1}|0\nz|${U1}|0|1|RUNNING||None\n4|${U0}|0|1|COMPLETING||\r\n`, (l) => bad.push(l));
    expect(jobs).toEqual([{ jobId: '4', name: U0, nice: 0, priority: 1, state: 'other', rawState: 'COMPLETING', pendingReason: '' }]);
    expect(bad).toEqual([`3|${U0}|x|1|RUNNING||None`, `z|${U1}|0|1|RUNNING||None`]);
  });

  it('reads both sbatch answers', () => {
    expect(parseSbatchJobId('Submitted batch job 7\n')).toBe('7');
    expect(parseSbatchJobId('8;cluster\n')).toBe('8');
    expect(parseSbatchJobId('')).toBeUndefined();
  });
});

describe('why a job ended', () => {
  it('words out-of-memory with the request and the largest RSS from sacct', () => {
    const out = '1234|OUT_OF_MEMORY|0:125|4096M||01:00:00|n1\n1234.batch|OUT_OF_MEMORY|0:125||4300000K||n1\n1234.extern|COMPLETED|0:0||1000K||n1\n';
    expect(terminalReason(parseSacct(out, '1234')!)).toEqual({
      kind: 'OUT_OF_MEMORY',
      exitCode: 0,
      detail: 'Slurm job 1234 ran out of memory (requested 4 GiB, max RSS 4.1 GiB)',
    });
  });

  it('maps every terminal state, and none for a job still going', () => {
    const kind = (state: string, exitCode = '0:0') => terminalReason({ jobId: '5', state, exitCode })?.kind;
    expect(['TIMEOUT', 'DEADLINE', 'NODE_FAIL', 'BOOT_FAIL', 'PREEMPTED', 'CANCELLED by 0', 'FAILED', 'COMPLETED', 'RUNNING', 'PENDING'].map((s) => kind(s))).toEqual([
      'TIMEOUT', 'TIMEOUT', 'NODE_FAIL', 'NODE_FAIL', 'PREEMPTED', 'CANCELLED', 'FAILED', 'COMPLETED', undefined, undefined,
    ]);
    expect(terminalReason({ jobId: '5', state: 'FAILED', exitCode: '3:0' })).toEqual({ kind: 'FAILED', exitCode: 3, detail: 'Slurm job 5 failed with exit code 3' });
    expect(terminalReason({ jobId: '5', state: 'CANCELLED by 1000' })?.detail).toBe('Slurm job 5 was cancelled outside the dispatcher (by 1000)');
  });

  it('reads scontrol show job (the fallback within MinJobAge)', () => {
    const line = 'JobId=77 JobName=zzzzz-dz642-x UserId=root(0) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) ExitCode=0:15 TimeLimit=00:01:00 NodeList=vm MinMemoryNode=64M TRES=cpu=1,mem=64M,node=1\n';
    const end = parseScontrolJob(line, '77');
    expect(end).toMatchObject({ state: 'TIMEOUT', exitCode: '0:15', timeLimit: '00:01:00', nodes: 'vm', reqMem: 64 * 2 ** 20 });
    expect(terminalReason(end!)?.detail).toBe('Slurm job 77 reached its time limit (00:01:00)');
    expect(parseScontrolJob(line, '78')).toBeUndefined();
    expect(terminalReason({ jobId: '9', state: 'OUT_OF_MEMORY', reqMem: 128 * 2 ** 20 })?.detail).toBe('Slurm job 9 ran out of memory (requested 128 MiB)');
    expect(slurmBytes('4Gn')).toBe(4 * 2 ** 30);
    expect(slurmBytes('garbage')).toBeUndefined();
  });
});
