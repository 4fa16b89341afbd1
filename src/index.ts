/**
 * arvados-dispatch: Arvados container dispatching for Node.js.
 *
 * @module
 */
export * from './types.js';
export { isContainerUuid, isUuid } from './uuid.js';
export { ArvadosClient, type ArvadosClientOptions, type CallOptions } from './client/client.js';
export { ArvadosApiError, ArvadosConfigError, isApiStatus } from './client/errors.js';
export { settingsFromEnv, parseSettingsFile, type ArvadosSettings } from './client/config.js';
export {
  Dispatcher,
  type ContainerUpdates,
  type DispatcherEvents,
  type DispatcherOptions,
  type DispatcherStatus,
  type RunContainer,
  type StreamEndReason,
} from './dispatcher/index.js';
export {
  LocalRunner,
  createLocalRunner,
  DEFAULT_KILL_GRACE,
  DEFAULT_RESERVE_EXTRA_RAM,
  DEFAULT_STOP_GRACE,
  ResourcePool,
  ResourceRequestError,
  detectCapacity,
  formatBytes,
  type Allocation,
  type GpuCapacity,
  type GpuStack,
  type LocalRunnerEvents,
  type LocalRunnerOptions,
  type ResourceCapacity,
  type ResourceCapacityOverrides,
  type ResourceNeed,
  type ResourceUsage,
  type RunnerNotice,
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
} from './runners/index.js';
