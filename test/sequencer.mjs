// Jest's test order, for every tier: Jest's own (files that failed last
// time, then the slowest by the timings in its cache, else the largest),
// except that each tier's known long files start first, longest first. CI
// starts without Jest's cache, and a tier's wall time is bounded by its
// longest file, so that one must start at once for the other workers to run
// everything else beside it; a long file started last ends last.
import Sequencer from '@jest/test-sequencer';

/** Paths under the repository, the longest first (as measured on two cores). */
export const LONG_FIRST = [
  'test/runners/slurm/time-limit.test.ts', // ~80-90 s: Slurm's one-minute time limit
  'test/runners/slurm/integration.test.ts',
  'test/runners/sge/sge-behaviours.test.ts',
  'test/package/pack.test.ts', // mostly tsc: busy cores, not waiting
  'test/runners/pbs/pbs-commands.test.ts',
  'test/cli/cluster-lock.test.ts',
  'test/package/installed-cli.test.ts',
  'test/cli/standby.test.ts',
  // Integration: the files that take longest with three workers on two cores.
  'test/runners/local/local-runner.test.ts',
  'test/runners/slurm/slurm-runner.test.ts',
  'test/cli/local.test.ts',
  'test/dispatcher/dispatcher.test.ts',
  'test/cli/busy.test.ts',
  'test/runners/lsf/lsf-behaviours.test.ts',
  'test/cli/lsf.test.ts',
  'test/dispatcher/hostile-properties.test.ts',
  'test/cli/service.test.ts',
  'test/runners/pbs/pbs-behaviours.test.ts',
  'test/runners/slurm/slurm-behaviours.test.ts',
  'test/runners/sge/sge-inprocess-behaviours.test.ts',
  'test/docs/lock-pacing.test.ts',
];

const rank = (path) => LONG_FIRST.findIndex((p) => path.endsWith(`/${p}`));

export default class LongFirst extends Sequencer {
  async sort(tests) {
    const sorted = await super.sort(tests);
    const known = sorted.filter((t) => rank(t.path) >= 0).sort((a, b) => rank(a.path) - rank(b.path));
    return [...known, ...sorted.filter((t) => rank(t.path) < 0)];
  }
}
