// Three tiers, as Jest projects (select with --selectProjects):
//   unit         no child process, no server: pure functions and parsers;
//   integration  real servers on 127.0.0.1 (FakeArvados), real child
//                processes, the built CLI, stand-in schedulers;
//   system       what needs a real Slurm, Grid Engine or PostgreSQL, and the packed
//                package as a user installs it (test/package/, test/examples/).
// `npm test` runs unit and integration; `npm run test:system` runs system.
// `npm test` runs 3 Jest workers (--maxWorkers=3; Jest's default is one
// fewer than the cores, a single worker on two cores): integration tests
// mostly wait on servers and child processes (a worker keeps less than
// half a core busy), and share no port (all listen on port 0), directory
// (each makes its own) or environment variable. On two cores the
// integration tier took 95 s with 2 workers, 71 s with 3, 58 s with 4, but
// 4 kept both cores almost fully busy, leaving no headroom for the tests
// that time real back-off when the machine is shared. A count, not a share
// of the cores: Jest reads a share above 100% as a count (150% would be 150
// workers). `npm run test:system` runs 3 workers too: its files share one
// Slurm, Grid Engine and PostgreSQL, so none assumes an empty queue or that
// a job starts at once, each names its jobs with its own random prefix and
// cleans up only those, the node has more slots than cores
// (scripts/slurm-up.sh, sge-up.sh), and the two files that take the cluster
// lock use different databases (scripts/postgres-up.sh). Its longest files
// start first (test/sequencer.mjs): one waits ~75 s on Slurm's time limit.
// A new test file lands in integration unless listed here.

/** Files of the unit tier. */
export const UNIT = [
  'test/cli/cluster-sections.test.ts',
  'test/cli/config.test.ts',
  'test/cli/presentation.test.ts',
  'test/cli/run.test.ts',
  'test/cli/units.test.ts',
  'test/client/config.test.ts',
  'test/dispatcher/freeze.test.ts',
  'test/dispatcher/memory.test.ts',
  'test/dispatcher/runner.test.ts',
  'test/dispatcher/scheduler.test.ts',
  'test/dispatcher/units.test.ts',
  'test/dispatcher/watermark.test.ts',
  'test/runners/batch/canceller.test.ts',
  'test/runners/batch/clock.test.ts',
  'test/runners/batch/echoes.test.ts',
  'test/runners/batch/gate.test.ts',
  'test/runners/batch/priority.test.ts',
  'test/runners/batch/template.test.ts',
  'test/runners/instance-types.test.ts',
  'test/runners/local/command.test.ts',
  'test/runners/local/resources.test.ts',
  'test/runners/pbs/pbs-adapter.test.ts',
  'test/runners/sge/sge-adapter.test.ts',
  'test/runners/slurm/adapter.test.ts',
  'test/server/units.test.ts',
  'test/testing/clock.test.ts',
];

/** Files and folders of the system tier: found by what they spawn (sbatch, qsub, npm pack). */
export const SYSTEM = [
  'test/cli/slurm.test.ts',
  'test/cli/sge.test.ts',
  'test/cli/service-slurm.test.ts',
  'test/cli/cluster-lock.test.ts',
  'test/cli/standby.test.ts',
  'test/runners/slurm/integration.test.ts',
  'test/runners/slurm/time-limit.test.ts',
  'test/runners/slurm/real-slurm.test.ts',
  'test/runners/sge/real-sge-commands.test.ts',
  'test/runners/sge/sge-behaviours.test.ts',
  'test/runners/pbs/pbs-commands.test.ts',
  'test/cli/pbs.test.ts',
  'test/package/',
  'test/examples/',
];

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const paths = (list) => list.map((p) => `<rootDir>/${escape(p)}`);

const common = {
  // TypeScript as ES modules, types stripped by esbuild (see the file).
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': '<rootDir>/test/helpers/esbuild-transform.mjs' },
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
};

/** @type {import('jest').Config} */
export default {
  projects: [
    { ...common, displayName: 'unit', testMatch: UNIT.map((p) => `<rootDir>/${p}`) },
    { ...common, displayName: 'integration', testPathIgnorePatterns: ['/node_modules/', ...paths(UNIT), ...paths(SYSTEM)] },
    {
      ...common,
      displayName: 'system',
      testMatch: SYSTEM.map((p) => (p.endsWith('/') ? `<rootDir>/${p}**/*.test.ts` : `<rootDir>/${p}`)),
      // Packs the package and installs it once per run, for every test that uses it.
      globalSetup: '<rootDir>/test/package/global-setup.mjs',
      globalTeardown: '<rootDir>/test/package/global-teardown.mjs',
    },
  ],
  // Tests start real servers and child processes; give slow machines room.
  testTimeout: 60_000,
  testSequencer: '<rootDir>/test/sequencer.mjs',
};
