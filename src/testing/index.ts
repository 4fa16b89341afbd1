/**
 * Testing helpers: `arvados-dispatch/testing`.
 *
 * @module
 */
export {
  FakeArvados,
  type FakeArvadosOptions,
  type FakeToken,
  type FaultKind,
  type FaultOptions,
  type OverrideResponse,
  type RequestRecord,
  type RouteName,
} from './fake-arvados.js';
export type { Transition, TokenRecord } from './store.js';
export { selfSignedCert, type SelfSignedCert } from './tls.js';
