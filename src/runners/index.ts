/**
 * Runners: what to do with a container once the Dispatcher has it. Each
 * runner uses only the Dispatcher's public API.
 *
 * @module
 */

// Local runner: crunch-run as a child process on this machine.
export * from './local/index.js';

// Slurm runner: each container a Slurm batch job. Named exports, since both
// runner modules re-export DEFAULT_RESERVE_EXTRA_RAM (from ./defaults.ts).
export {
  SlurmRunner,
  SLURM_RUNNER_DEFAULTS,
  DEFAULT_SBATCH_ARGUMENTS,
  DEFAULT_SBATCH_GPU_ARGUMENTS,
  DEFAULT_PRIORITY_SPREAD,
  type SlurmRunnerOptions,
  type SlurmRunnerEvents,
  type SlurmRunnerStatus,
  type LostJob,
  type VanishGrace,
  type RetryBackoff,
  type SlurmCommands,
  type CommandRunner,
  type RunOptions,
  type RunResult,
} from './slurm/index.js';
