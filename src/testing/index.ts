/**
 * Testing helpers: `arvados-dispatch/testing`.
 *
 * @module
 */
export {
  FakeArvados,
  ORDINARY_FAULTS,
  type FakeArvadosOptions,
  type FakeToken,
  type FaultKind,
  type FaultOptions,
  type OrdinaryFaultKind,
  type OverrideResponse,
  type RequestRecord,
  type RouteName,
  type WaitForStateOptions,
} from './fake-arvados.js';
export { BAD_IDENTITIES, HOSTILE_FAULTS, HOSTILE_UUIDS, MALFORMED_ITEMS, type HostileFaultKind } from './hostile.js';
export {
  CRUNCH_RUN_SIM_MODES,
  crunchRunSimPath,
  simulateCrunchRun,
  type CrunchRunSimMode,
  type CrunchRunSimOptions,
  type CrunchRunSimRecord,
  type CrunchRunSimSetting,
} from './crunch-run-sim.js';
export type { Transition } from './store.js';
export type { TokenRecord } from './tokens.js';
export { TestClock } from './clock.js';
export { MemoryContainerApi } from './memory-api.js';
export type { ContainerApi } from '../dispatcher/api.js';
export type { Clock } from '../util/sleep.js';
export { selfSignedCert, type SelfSignedCert } from './tls.js';
