export {
  Dispatcher,
  type DispatchEntry,
  type InstanceTypeView,
  type DispatcherEventOptions,
  type IncrementalOptions,
  type DispatcherEvents,
  type DispatcherOptions,
  type DispatcherStatus,
} from './dispatcher.js';
export type { ContainerApi } from './api.js';
export {
  RunnerConfigError,
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
} from './runner.js';
export { STOP_SIGNALS, type SecondSignal } from './signals.js';
export type { ContainerUpdates, StreamEndReason } from './updates.js';
