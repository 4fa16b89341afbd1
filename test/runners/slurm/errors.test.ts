import { describe, expect, it } from '@jest/globals';
import { CommandTimeoutError } from '../../../src/runners/slurm/commands.js';
import { classifySbatchFailure, classifySbatchStderr } from '../../../src/runners/slurm/errors.js';

// Each message as Slurm prints it; the source of each is cited in errors.ts.
const samples: Array<[string, 'transient' | 'backpressure' | 'fatal']> = [
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
  ["sbatch: unrecognized option '--bogus'", 'fatal'],
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

describe('classifySbatchFailure', () => {
  it('classifies a non-zero exit by its stderr', () => {
    expect(classifySbatchFailure({ code: 1, stderr: 'sbatch: error: AssocMaxSubmitJobLimit' })).toBe('backpressure');
    expect(classifySbatchFailure({ code: 1, stderr: 'sbatch: error: Batch job submission failed: Invalid partition name specified' })).toBe('fatal');
  });

  it('treats a kill by a signal and a timeout as transient', () => {
    expect(classifySbatchFailure({ code: null, signal: 'SIGKILL', stderr: '' })).toBe('transient');
    expect(classifySbatchFailure(new CommandTimeoutError('sbatch', [], 10, { stdout: '', stderr: '' }))).toBe(
      'transient',
    );
  });

  it('treats a missing or unrunnable sbatch as fatal, other errors as transient', () => {
    const enoent = Object.assign(new Error('spawn sbatch ENOENT'), { code: 'ENOENT' });
    const eacces = Object.assign(new Error('spawn sbatch EACCES'), { code: 'EACCES' });
    const eagain = Object.assign(new Error('spawn EAGAIN'), { code: 'EAGAIN' });
    expect(classifySbatchFailure(enoent)).toBe('fatal');
    expect(classifySbatchFailure(eacces)).toBe('fatal');
    expect(classifySbatchFailure(eagain)).toBe('transient');
  });
});
