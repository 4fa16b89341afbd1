// Text a container controls never classifies a scheduler's error: the pure
// parts (partition checks, echo removal, shared verdicts) against each
// adapter's classifier.
import { describe, expect, it } from '@jest/globals';
import type { Container } from '../../../src/index.js';
import { SharedVerdicts, badPartition, containerValues, withoutEchoes } from '../../../src/runners/batch/echoes.js';
import { classifySlurmFailure } from '../../../src/runners/batch/slurm/errors.js';
import { classifySge } from '../../../src/runners/batch/sge/output.js';
import { classifyLsf } from '../../../src/runners/batch/lsf/output.js';

const withParts = (partitions: unknown[]): Container => ({ uuid: 'zzzzz-dz642-012345678901234', scheduling_parameters: { partitions } }) as unknown as Container;
const failed = (stderr: string) => ({ code: 1, signal: null, stdout: '', stderr });

describe('partition names a container chose', () => {
  it('lists each name and the joined list; none without partitions', () => {
    expect(containerValues(withParts(['a', 'b']))).toEqual(['a,b', 'a', 'b']);
    expect(containerValues(withParts([]))).toEqual([]);
    expect(containerValues({ uuid: 'zzzzz-dz642-012345678901234' } as Container)).toEqual([]);
  });

  it.each([['x Permission denied'], ['x try again'], ['x MaxSubmitJobs'], ['a,b'], [''], ['tab\there'], ["q'uote"], ['x'.repeat(201)], ['nl\n']])(
    'refuses %j, which no scheduler accepts',
    (p) => {
      expect(badPartition(withParts([p]))).toMatch(/invalid partition name/);
      // The message is one line, whatever the name holds.
      expect(badPartition(withParts([p]))).not.toMatch(/[\n\t]/);
    },
  );

  it.each([['compute'], ['gpu-v100.32GB'], ['all.q'], ['MaxSubmitJobs']])('accepts %j', (p) => {
    expect(badPartition(withParts([p]))).toBeUndefined();
  });
});

describe('classification without echoes', () => {
  const cases: Array<[string, string, (r: ReturnType<typeof failed>) => string, string, string]> = [
    // [name, partition, classifier, stderr as the scheduler writes it, verdict without the echo]
    ['Slurm', 'MaxSubmitJobsPerUser', (r) => classifySlurmFailure(r, 'submit'), 'sbatch: error: invalid partition specified: MaxSubmitJobsPerUser\nsbatch: error: Batch job submission failed: Invalid partition name specified', 'fatal'],
    ['Slurm', 'QOSGrpSubmitJobsLimit', (r) => classifySlurmFailure(r, 'submit'), 'sbatch: error: invalid partition specified: QOSGrpSubmitJobsLimit', 'fatal'],
    ['Grid Engine', 'SGE_ROOT', (r) => classifySge(r, 'submit'), 'Unable to run job: Job was rejected because job requests unknown queue "SGE_ROOT".\nExiting.', 'fatal'],
    ['Grid Engine', 'temporarily', (r) => classifySge(r, 'submit'), 'Unable to run job: Job was rejected because job requests unknown queue "temporarily".', 'fatal'],
    ['LSF', 'MAX_PEND_JOBS', (r) => classifyLsf(r, 'submit'), 'MAX_PEND_JOBS: No such queue. Job not submitted.', 'fatal'],
    ['LSF', 'temporarily', (r) => classifyLsf(r, 'submit'), 'temporarily: No such queue. Job not submitted.', 'fatal'],
  ];
  it.each(cases)('%s: an echoed %j does not decide', (_name, partition, classify, stderr, want) => {
    // Read whole, the echo decides (the test would catch a regression)...
    expect(classify(failed(stderr))).not.toBe(want);
    // ...cut out, the scheduler's own words do.
    const cut = withoutEchoes(failed(stderr), containerValues(withParts([partition])));
    expect(classify(cut as ReturnType<typeof failed>)).toBe(want);
  });

  it('cuts any case, longest first, and leaves errors running the command alone', () => {
    const r = withoutEchoes(failed('queue A,B and a and b'), ['a,b', 'a', 'b']) as ReturnType<typeof failed>;
    expect(r.stderr).toBe('queue \0 \0nd \0 \0nd \0');
    const err = new Error('spawn a ENOENT');
    expect(withoutEchoes(err, ['a'])).toBe(err);
  });
});

describe('SharedVerdicts', () => {
  it('counts a container that chose nothing at once, and chosen values only when two different sets agree', () => {
    const v = new SharedVerdicts(1_000);
    expect(v.confirm('configuration', [], 0)).toBe(true);
    expect(v.confirm('configuration', ['x'], 0)).toBe(false);
    expect(v.confirm('configuration', ['x'], 10)).toBe(false);
    expect(v.confirm('backpressure', ['y'], 10)).toBe(false);
    expect(v.confirm('configuration', ['y'], 20)).toBe(true);
    // Old evidence expires; a success clears it.
    expect(v.confirm('backpressure', ['z'], 2_000)).toBe(false);
    v.clear();
    expect(v.confirm('backpressure', ['y'], 2_001)).toBe(false);
  });
});
