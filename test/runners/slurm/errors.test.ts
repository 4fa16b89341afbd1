import { describe, expect, it } from '@jest/globals';
import { CommandTimeoutError } from '../../../src/runners/batch/commands.js';
import { classifySbatchStderr, classifySlurmFailure } from '../../../src/runners/batch/slurm/errors.js';

const done = (code: number | null, stderr: string, signal: NodeJS.Signals | null = null) => ({ code, signal, stdout: '', stderr });

// Each message as Slurm prints it; the source of each is cited in errors.ts.
const samples: Array<[string, 'transient' | 'backpressure' | 'fatal' | 'configuration']> = [
  ['sbatch: error: Batch job submission failed: Socket timed out on send/recv operation', 'transient'],
  ['sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)', 'transient'],
  ['sbatch: error: Batch job submission failed: Unable to contact slurm controller (send failure)', 'transient'],
  ['sbatch: error: Batch job submission failed: Resource temporarily unavailable', 'transient'],
  ['sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying', 'transient'],
  ['sbatch: error: Batch job submission failed: Unexpected message received', 'transient'],
  ['sbatch: error: Batch job submission failed: Zero Bytes were transmitted or received', 'transient'],
  ['sbatch: error: Batch job submission failed: Connection refused', 'transient'],
  ['sbatch: error: Batch job submission failed: Slurm backup controller in standby mode', 'transient'],
  ['sbatch: error: Batch job submission failed: I/O error writing script/environment to file', 'transient'],
  [
    'sbatch: error: QOSMaxSubmitJobPerUserLimit\n' +
      "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
    'backpressure',
  ],
  [
    'sbatch: error: AssocMaxSubmitJobLimit\n' +
      "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
    'backpressure',
  ],
  ['sbatch: error: AssocGrpSubmitJobsLimit', 'backpressure'],
  ['sbatch: error: QOSGrpSubmitJobsLimit', 'backpressure'],
  ['sbatch: error: MaxSubmitJobsPerUser', 'backpressure'],
  ['sbatch: error: MaxSubmitJobLimit', 'backpressure'],
  [
    "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
    'backpressure',
  ],
  ['sbatch: error: Batch job submission failed: MaxJobCount limit reached', 'backpressure'],
  ['sbatch: error: Batch job submission failed: Rate limit exceeded, please retry momentarily', 'backpressure'],
  [
    'sbatch: error: QOSMaxWallDurationPerJobLimit\n' +
      "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
    'fatal',
  ],
  [
    'sbatch: error: invalid partition specified: gpu-v100-32GB\n' +
      'sbatch: error: Batch job submission failed: Invalid partition name specified',
    'fatal',
  ],
  [
    'sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified',
    'fatal',
  ],
  ['sbatch: error: Batch job submission failed: Requested node configuration is not available', 'fatal'],
  ['sbatch: error: Batch job submission failed: Memory required by task is not available', 'fatal'],
  // Our template's mistake, not the container's: no dispatch attempt is charged.
  ["sbatch: unrecognized option '--bogus'", 'configuration'],
  ['', 'fatal'],
];

describe('classifySbatchStderr', () => {
  it.each(samples)('%s -> %s', (stderr, kind) => {
    expect(classifySbatchStderr(stderr)).toBe(kind);
  });

  it("judges by the final failure, not sbatch's own retry notes", () => {
    expect(
      classifySbatchStderr(
        'sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n' +
          'sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n',
      ),
    ).toBe('fatal');
    expect(
      classifySbatchStderr(
        'sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n' +
          'sbatch: error: Batch job submission failed: Resource temporarily unavailable\n',
      ),
    ).toBe('transient');
  });
});

describe('classifySlurmFailure', () => {
  it('classifies a non-zero exit by its stderr', () => {
    expect(classifySlurmFailure(done(1, 'sbatch: error: AssocMaxSubmitJobLimit'))).toBe('backpressure');
    expect(classifySlurmFailure(done(1, 'sbatch: error: Batch job submission failed: Invalid partition name specified'))).toBe('fatal');
  });

  it('treats a kill by a signal and a timeout as transient', () => {
    expect(classifySlurmFailure(done(null, '', 'SIGKILL'))).toBe('transient');
    expect(classifySlurmFailure(new CommandTimeoutError('sbatch', [], 10, { stdout: '', stderr: '' }))).toBe(
      'transient',
    );
  });

  it('treats a missing or unrunnable command as configuration (no container is charged), other errors as transient', () => {
    const enoent = Object.assign(new Error('spawn sbatch ENOENT'), { code: 'ENOENT' });
    const eacces = Object.assign(new Error('spawn sbatch EACCES'), { code: 'EACCES' });
    const eagain = Object.assign(new Error('spawn EAGAIN'), { code: 'EAGAIN' });
    expect(classifySlurmFailure(enoent)).toBe('configuration');
    expect(classifySlurmFailure(eacces)).toBe('configuration');
    expect(classifySlurmFailure(eagain)).toBe('transient');
  });
});

describe('classifySlurmFailure: our own mistakes', () => {
  it('reads an option sbatch does not know (a bad template) as configuration, not as the container\'s fault', () => {
    expect(classifySlurmFailure(done(1, "sbatch: unrecognized option '--foo=1'\nTry \"sbatch --help\" for more information"))).toBe('configuration');
    expect(classifySlurmFailure(done(1, 'sbatch: error: Batch job submission failed: Access/permission denied'))).toBe('configuration');
  });

  it('reads other commands\' failures as transient unless they say our arguments are wrong', () => {
    expect(classifySlurmFailure(done(1, 'squeue: error: Unable to contact slurm controller'), 'query')).toBe('transient');
    expect(classifySlurmFailure(done(1, "squeue: error: Invalid user: nobody-here"), 'query')).toBe('configuration');
    expect(classifySlurmFailure(done(1, 'scancel: error: Kill job error on job id 5: Invalid job id specified'), 'cancel')).toBe('transient');
  });
});
