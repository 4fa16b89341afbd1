export {
  LocalRunner,
  DEFAULT_KILL_GRACE,
  DEFAULT_RESERVE_EXTRA_RAM,
  DEFAULT_STOP_GRACE,
  SPAWN_RETRY_DELAYS,
  type LocalRunnerEvents,
  type LocalRunnerOptions,
  type RunnerNotice,
} from './local-runner.js';
export { gatewayAuthSecret } from '../crunch-run.js';
export {
  ResourcePool,
  ResourceRequestError,
  detectCapacity,
  formatBytes,
  type Allocation,
  type GpuCapacity,
  type GpuStack,
  type ResourceCapacity,
  type ResourceCapacityOverrides,
  type ResourceNeed,
  type ResourceUsage,
} from './resources.js';
