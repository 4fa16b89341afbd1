/**
 * The LSF adapter's pure parts: bsub arguments (the cases of Arvados'
 * lib/lsf/dispatch_test.go), bjobs JSON, bkill answers, failure classes,
 * pending reasons and terminal reasons.
 */
import { describe, expect, it } from '@jest/globals';
import type { Container } from '../../../src/types.js';
import { CommandTimeoutError } from '../../../src/runners/batch/commands.js';
import type { QueueJob, RunResult } from '../../../src/runners/batch/adapter.js';
import { TemplateError } from '../../../src/runners/batch/template.js';
import { LsfAdapter } from '../../../src/runners/batch/lsf/adapter.js';
import { BjobsParseError, bkillOnlyGone, classifyLsf, lsfEnd, parseBjobs, parseBsubJobId } from '../../../src/runners/batch/lsf/output.js';
import { bsubArgs, maxRunMinutes, validateBsubTemplates, type BsubOptions } from '../../../src/runners/batch/lsf/template.js';
import { containerArguments } from '../../../src/runners/batch/template.js';

const MiB = 1024 * 1024;
// Arvados' test configuration: ReserveExtraRAM 256 MiB.
const RESERVE = 256 * MiB;
// arvadostest.DockerImage112PDH: a manifest of 174 bytes, i.e. a 128 MiB image estimate.
const IMAGE = 'd740a57097711e08eb9b2a93518f20ab+174';

function ctr(fields: Partial<Container>): Container {
  return { uuid: 'zzzzz-dz642-queuedcontainer', state: 'Locked', priority: 1, locked_by_uuid: null, ...fields };
}
function result(fields: Partial<RunResult>): RunResult {
  return { code: 0, signal: null, stdout: '', stderr: '', ...fields };
}
/** A submit request with the templates expanded as the core expands them (once, with LSF's %W rule). */
function req(container: Container, options: BsubOptions = {}) {
  return { uuid: container.uuid, script: '#!/bin/sh\nexec crunch-run\n', args: bsubArgs(container, options), container };
}
const prefix = ['-o', '/tmp/crunch-run.%J.out', '-e', '/tmp/crunch-run.%J.err'];

describe('bsub arguments (Arvados dispatch_test.go)', () => {
  it('expands the default list for the queued fixture, %%J becoming %J', () => {
    const queued = ctr({
      container_image: 'test',
      runtime_constraints: { ram: 12000000000, vcpus: 4 },
      mounts: { '/tmp': { kind: 'tmp', capacity: 24000000000 }, '/var/spool/cwl': { kind: 'tmp', capacity: 24000000000 } },
    });
    expect(bsubArgs(queued, { reserveExtraRam: RESERVE })).toEqual([
      ...prefix,
      '-J', 'zzzzz-dz642-queuedcontainer',
      '-n', '4',
      '-D', '11701MB',
      '-R', 'rusage[mem=11701MB:tmp=45777MB] span[hosts=1]',
      '-R', 'select[mem>=11701MB]',
      '-R', 'select[tmp>=45777MB]',
      '-R', 'select[ncpus>=4]',
    ]);
  });

  it('counts the keep disk cache and the image in %T (crPending)', () => {
    const pending = ctr({
      container_image: IMAGE,
      runtime_constraints: { ram: 100000000, vcpus: 2, keep_cache_disk: 8 * 1024 * MiB },
      mounts: { '/mnt/out': { kind: 'tmp', capacity: 1000 } },
    });
    expect(bsubArgs(pending, { reserveExtraRam: RESERVE }).slice(4)).toEqual([
      '-J', 'zzzzz-dz642-queuedcontainer',
      '-n', '2',
      '-D', '352MB',
      '-R', 'rusage[mem=352MB:tmp=8448MB] span[hosts=1]',
      '-R', 'select[mem>=352MB]',
      '-R', 'select[tmp>=8448MB]',
      '-R', 'select[ncpus>=2]',
    ]);
  });

  it('adds the GPU arguments for a container that wants GPUs (crCUDARequest)', () => {
    const cuda = ctr({ runtime_constraints: { ram: 16000000000, vcpus: 4, gpu: { device_count: 1 } } });
    const args = bsubArgs(cuda, { reserveExtraRam: RESERVE });
    expect(args.slice(-2)).toEqual(['-gpu', 'num=1']);
    expect(args).toContain('15515MB');
  });

  it('passes max_run_time plus the 5 minute overhead, rounded up, as -We (crMaxRunTime: 124 s -> 8)', () => {
    const c = ctr({ runtime_constraints: { ram: 1000000, vcpus: 1, keep_cache_disk: 2048 * MiB }, container_image: IMAGE, scheduling_parameters: { max_run_time: 124 } });
    const args = bsubArgs(c, { reserveExtraRam: RESERVE });
    expect(args.slice(-2)).toEqual(['-We', '8']);
    expect(args).toContain('257MB');
    expect(args).toContain('rusage[mem=257MB:tmp=2304MB] span[hosts=1]');
  });

  it('drops the -We %W pair when there is no limit, and uses MaxRunTimeDefault when set', () => {
    const c = ctr({ runtime_constraints: { ram: MiB, vcpus: 1 } });
    expect(bsubArgs(c, { args: ['-J', '%U', '-We', '%W', '-W', '%W'] })).toEqual(['-J', c.uuid]);
    expect(bsubArgs(c, { args: ['-W', '%W'], maxRunTimeDefault: 3_600_000 })).toEqual(['-W', '65']);
    expect(bsubArgs(c, { args: ['-W', '%W'], maxRunTimeDefault: 3_600_000, maxRunTimeOverhead: 0 })).toEqual(['-W', '60']);
    expect(maxRunMinutes({ scheduling_parameters: { max_run_time: 60 } }, { maxRunTimeOverhead: 1 })).toBe(2);
  });

  it('refuses an unknown substitution, naming it (TestBsubArgs)', () => {
    expect(() => validateBsubTemplates(['--zebra', '%Z'])).toThrow(TemplateError);
    expect(() => validateBsubTemplates(['--zebra', '%Z'])).toThrow(/%Z in BsubArgumentsList/);
    expect(() => validateBsubTemplates(['-q', '%P'])).toThrow(/%P/);
  });

  it('prefixes sudo -E -u USER with BsubSudoUser (TestBsubArgs)', () => {
    const adapter = new LsfAdapter({ sudoUser: 'crunch' });
    const c = ctr({ uuid: 'zzzzz-dz642-asdfasdfasdfasd' });
    const spec = adapter.submit(req(c, { args: ['--example', '%U', '-J', '%U'] }));
    expect(spec.command).toBe('sudo');
    expect(spec.args).toEqual(['-E', '-u', 'crunch', 'bsub', '--example', 'zzzzz-dz642-asdfasdfasdfasd', '-J', 'zzzzz-dz642-asdfasdfasdfasd']);
    expect(spec.input).toContain('exec crunch-run');
    expect(adapter.commands).toMatchObject({ sudo: 'sudo', bsub: 'bsub' });
  });

  it('always names the job after the container, whatever the templates say', () => {
    const c = ctr({ uuid: 'zzzzz-dz642-asdfasdfasdfasd' });
    expect(new LsfAdapter().submit(req(c, { args: ['-n', '%C'] })).args.slice(0, 2)).toEqual(['-J', c.uuid]);
    expect(new LsfAdapter().submit(req(c, { args: ['-J', 'other'] })).args).toEqual(['-J', c.uuid]);
  });

  it('submits the arguments the core expanded, once, with its %W rule given to the core', () => {
    const a = new LsfAdapter({ maxRunTimeOverhead: 60_000 });
    const c = ctr({ uuid: 'zzzzz-dz642-asdfasdfasdfasd', scheduling_parameters: { max_run_time: 600 } });
    // A literal %% in an expanded value stays as it is: no second expansion.
    expect(a.submit({ ...req(c), args: ['-J', c.uuid, '-o', '100%%'] }).args).toEqual(['-J', c.uuid, '-o', '100%%']);
    expect(a.maxRunMinutes(c)).toBe(11);
    const core = containerArguments(c, { args: ['-We', '%W', '-J', '%U'], gpuArgs: [], maxRunMinutes: a.maxRunMinutes(c) }, a.templates);
    expect(core).toEqual(bsubArgs(c, { args: ['-We', '%W', '-J', '%U'], maxRunTimeOverhead: 60_000 }));
  });
});

describe('bjobs', () => {
  const report = JSON.stringify({
    COMMAND: 'bjobs',
    JOBS: 4,
    RECORDS: [
      { JOBID: '100', STAT: 'RUN', JOB_NAME: 'zzzzz-dz642-queuedcontainer', PEND_REASON: '', JOB_PRIORITY: '' },
      // The real bjobs output includes a trailing ';' here.
      { JOBID: '101', STAT: 'PEND', JOB_NAME: 'zzzzz-dz642-pendingcontain1', PEND_REASON: 'There are no suitable hosts for the job;', JOB_PRIORITY: '50' },
      { JOBID: '102', STAT: 'RUN', JOB_NAME: 'somebody-elses-job', PEND_REASON: '' },
      { JOBID: '103', STAT: 'DONE', JOB_NAME: 'zzzzz-dz642-finishedcontain', PEND_REASON: '' },
      { JOBID: '104', STAT: 'PSUSP', JOB_NAME: 'zzzzz-dz642-heldcontainer01', PEND_REASON: 'The job was suspended by the user while pending;' },
    ],
  });

  it('lists our unfinished jobs with their state, priority and pending reason', () => {
    expect(parseBjobs(report)).toEqual([
      { jobId: '100', name: 'zzzzz-dz642-queuedcontainer', state: 'running', rawState: 'RUN', priority: 0, nice: 0, pendingReason: '' },
      { jobId: '101', name: 'zzzzz-dz642-pendingcontain1', state: 'pending', rawState: 'PEND', priority: 50, nice: 0, pendingReason: 'There are no suitable hosts for the job' },
      { jobId: '104', name: 'zzzzz-dz642-heldcontainer01', state: 'other', rawState: 'PSUSP', priority: 0, nice: 0, pendingReason: 'The job was suspended by the user while pending' },
    ]);
  });

  it('reports malformed records and refuses output that is not a bjobs report', () => {
    const bad: string[] = [];
    parseBjobs(JSON.stringify({ RECORDS: [{ JOBID: 'x', STAT: 'RUN', JOB_NAME: 'zzzzz-dz642-queuedcontainer' }] }), (l) => bad.push(l));
    expect(bad).toHaveLength(1);
    expect(() => parseBjobs('LSF is down. Please wait ...')).toThrow(BjobsParseError);
    expect(() => parseBjobs('{"COMMAND":"bjobs"}')).toThrow(BjobsParseError);
    expect(parseBjobs('{"COMMAND":"bjobs","JOBS":0,"RECORDS":[]}')).toEqual([]);
  });

  it("asks for every user's jobs (bjobs -u all), or the given user's", () => {
    expect(new LsfAdapter({ sudoUser: 'crunch' }).queueQuery().args).toEqual(['-u', 'all', '-o', 'jobid stat job_name pend_reason job_priority', '-json']);
    expect(new LsfAdapter({ user: 'alice' }).queueQuery().args[1]).toBe('alice');
  });

  it('cancels on "There are no suitable hosts for the job", and only on reasons that never clear', () => {
    const a = new LsfAdapter();
    expect(a.neverClears('There are no suitable hosts for the job')).toBe(true);
    expect(a.neverClears('New job is waiting for scheduling')).toBe(false);
    expect(a.neverClears('The user has reached the per-user job slot limit')).toBe(false);
  });
});

describe('bsub, bkill and failures', () => {
  it('reads the job id from bsub', () => {
    expect(parseBsubJobId('Job <1234> is submitted to default queue <normal>.\n')).toBe('1234');
    expect(parseBsubJobId('submitted job')).toBeUndefined();
  });

  it('counts "already finished" and "No matching job found" as gone, nothing else', () => {
    expect(bkillOnlyGone(result({ code: 255, stderr: 'Job <100>: Job has already finished\n' }))).toBe(true);
    expect(bkillOnlyGone(result({ code: 255, stdout: 'Job <101> is being terminated\n', stderr: 'Job <100>: No matching job found\n' }))).toBe(true);
    expect(bkillOnlyGone(result({ code: 255, stderr: 'Job <100>: User permission denied\n' }))).toBe(false);
    expect(bkillOnlyGone(result({ code: 255, stderr: '' }))).toBe(false);
  });

  it('classifies failures', () => {
    const enoent = Object.assign(new Error('spawn bsub ENOENT'), { code: 'ENOENT' });
    expect(classifyLsf(enoent, 'submit')).toBe('configuration');
    expect(classifyLsf(new CommandTimeoutError('bsub', [], 1, { stdout: '', stderr: '' }), 'submit')).toBe('transient');
    expect(classifyLsf(result({ code: 255, stderr: 'LSF is down. Please wait ...' }), 'submit')).toBe('transient');
    expect(classifyLsf(result({ code: 255, stderr: 'batch system daemon not responding ... still trying' }), 'submit')).toBe('transient');
    expect(classifyLsf(result({ code: 255, stderr: 'User <crunch>: Pending job threshold reached. Retrying in 60 seconds...' }), 'submit')).toBe('backpressure');
    expect(classifyLsf(result({ code: 1, stderr: 'sudo: a password is required' }), 'submit')).toBe('configuration');
    expect(classifyLsf(result({ code: 255, stderr: 'No such queue. Job not submitted.' }), 'submit')).toBe('fatal');
    expect(classifyLsf(result({ code: 255, stderr: 'something odd' }), 'cancel')).toBe('transient');
  });
});

describe('renicing with bmod -sp', () => {
  const job = (jobId: string, priority: number): QueueJob => ({ jobId, name: `zzzzz-dz642-${jobId.padStart(15, '0')}`, state: 'pending', rawState: 'PEND', priority, nice: 0, pendingReason: '' });

  it('counts user priorities down from the top in the wanted order, changing only what differs', () => {
    const a = new LsfAdapter({ maxUserPriority: 100 });
    const changes = a.planPriorities([job('1', 100), job('2', 0), job('3', 0)], 10);
    expect(changes.map((c) => [c.job.jobId, c.value])).toEqual([['2', 90], ['3', 80]]);
    expect(a.renice(job('2', 0), 90)).toEqual({ command: 'bmod', args: ['-sp', '90', '2'] });
    expect(new LsfAdapter({ maxUserPriority: 0 }).planPriorities([job('1', 0)], 10)).toEqual([]);
  });

  it('says to stop reprioritising once LSF refuses a user priority, but not for a job that just left; and changes nothing itself', () => {
    const a = new LsfAdapter({ maxUserPriority: 100 });
    expect(a.classify(result({ code: 255, stderr: 'Job <2>: No matching job found\n' }), 'renice')).toBe('transient');
    expect(a.classify(result({ code: 255, stderr: 'Job <2>: User-assigned job priority is not enabled\n' }), 'renice')).toEqual({ kind: 'transient', disable: 'renice' });
    // Pure: the core keeps what the verdict said, the adapter plans as before.
    expect(a.planPriorities([job('1', 50), job('2', 50)], 10)).toHaveLength(2);
  });
});

describe('terminal reasons from bjobs -a', () => {
  const rec = (fields: Record<string, string>) => JSON.stringify({ COMMAND: 'bjobs', JOBS: 1, RECORDS: [{ JOBID: '7', ...fields }] });

  it('maps LSF exit reasons', () => {
    expect(lsfEnd(rec({ STAT: 'EXIT', EXIT_CODE: '137', EXIT_REASON: 'TERM_MEMLIMIT: job killed after reaching LSF memory usage limit', MAX_MEM: '4.1 Gbytes', MEMLIMIT: '4 G' }))).toEqual({
      kind: 'OUT_OF_MEMORY',
      exitCode: 137,
      detail: 'LSF job 7 ran out of memory (limit 4 G, max memory 4.1 Gbytes)',
    });
    expect(lsfEnd(rec({ STAT: 'EXIT', EXIT_CODE: '140', EXIT_REASON: 'TERM_RUNLIMIT: job killed after reaching LSF run time limit' }))?.kind).toBe('TIMEOUT');
    expect(lsfEnd(rec({ STAT: 'EXIT', EXIT_REASON: 'TERM_PREEMPT: job killed after preemption' }))?.kind).toBe('PREEMPTED');
    expect(lsfEnd(rec({ STAT: 'EXIT', EXIT_CODE: '130', EXIT_REASON: 'TERM_OWNER: job killed by owner' }))?.kind).toBe('CANCELLED');
    expect(lsfEnd(rec({ STAT: 'EXIT', EXIT_CODE: '3', EXIT_REASON: '' }))).toEqual({ kind: 'FAILED', exitCode: 3, detail: 'LSF job 7 exited with code 3' });
    expect(lsfEnd(rec({ STAT: 'DONE', EXIT_CODE: '' }))?.kind).toBe('COMPLETED');
    expect(lsfEnd(rec({ STAT: 'RUN' }))).toBeUndefined();
    expect(lsfEnd(JSON.stringify({ COMMAND: 'bjobs', JOBS: 1, RECORDS: [{ JOBID: '7', ERROR: 'Job <7> is not found' }] }))).toBeUndefined();
  });
});
