/**
 * arvados-dispatch: Arvados container dispatching for Node.js.
 *
 * @module
 */
export * from './types.js';
export { isContainerUuid, isUuid } from './uuid.js';
export type { Clock } from './util/sleep.js';
export { ArvadosClient } from './client/client.js';
export * from './client/options.js';
export { ArvadosApiError, ArvadosConfigError, ArvadosProtocolError, isApiStatus, type ArvadosApiErrorDetails } from './client/errors.js';
export { settingsFromEnv, parseSettingsFile, type ArvadosSettings } from './client/config.js';
export {
  Dispatcher,
  RunnerConfigError,
  STOP_SIGNALS,
  type ContainerUpdates,
  type DispatchEntry,
  type InstanceTypeView,
  type DispatcherEventOptions,
  type IncrementalOptions,
  type DispatcherEvents,
  type DispatcherOptions,
  type DispatcherStatus,
  type ReleaseAction,
  type ReleaseOptions,
  type RunContainer,
  type Runner,
  type RunnerCommandRecord,
  type RunnerEventSource,
  type RunnerEvents,
  type RunnerStatus,
  type RunnerLostJob,
  type RunnerAdopted,
  type RunnerExited,
  type RunnerOutcome,
  type RunnerOutput,
  type RunnerResources,
  type RunnerSignalled,
  type RunnerStarted,
  type RunnerWaiting,
  type SecondSignal,
  type StreamEndReason,
  type ContainerApi,
} from './dispatcher/index.js';
export * from './runners/index.js';
