export {
  Dispatcher,
  type DispatcherEvents,
  type DispatcherOptions,
  type DispatcherStatus,
  type RunContainer,
} from './dispatcher.js';
export type { ContainerUpdates, StreamEndReason } from './updates.js';
