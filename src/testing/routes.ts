/**
 * Which of the fake's routes a request is for, from its method and path, as
 * the API server's routes table decides it.
 *
 * @module
 */

/** Names of the routes FakeArvados serves, as used by counters, faults and overrides. */
export type RouteName =
  | 'discovery'
  | 'current'
  | 'containers.list'
  | 'containers.get'
  | 'containers.create'
  | 'containers.update'
  | 'containers.lock'
  | 'containers.unlock'
  | 'logs.create'
  | 'logs.list'
  | 'unknown';

/** A request's route, and the container uuid in its path if any. */
export interface Route {
  name: RouteName;
  uuid?: string;
}

const CONTAINER_PATH = /^\/arvados\/v1\/containers\/([^/]+)(?:\/(lock|unlock))?\/?$/;

/** The route of `method` (after any method override) on `path`; `unknown` when none matches. */
export function routeOf(method: string, path: string): Route {
  if (path === '/discovery/v1/apis/arvados/v1/rest') return { name: method === 'GET' || method === 'POST' ? 'discovery' : 'unknown' };
  if (path === '/arvados/v1/api_client_authorizations/current' && method === 'GET') return { name: 'current' };
  if (path === '/arvados/v1/containers' || path === '/arvados/v1/containers/') {
    if (method === 'GET') return { name: 'containers.list' };
    if (method === 'POST') return { name: 'containers.create' };
    return { name: 'unknown' };
  }
  if (path === '/arvados/v1/logs' || path === '/arvados/v1/logs/') {
    if (method === 'POST') return { name: 'logs.create' };
    if (method === 'GET') return { name: 'logs.list' };
    return { name: 'unknown' };
  }
  const m = CONTAINER_PATH.exec(path);
  if (m) {
    const uuid = decodeURIComponent(m[1]);
    if (m[2] && method === 'POST') return { name: m[2] === 'lock' ? 'containers.lock' : 'containers.unlock', uuid };
    if (!m[2] && method === 'GET') return { name: 'containers.get', uuid };
    if (!m[2] && (method === 'PUT' || method === 'PATCH')) return { name: 'containers.update', uuid };
  }
  return { name: 'unknown' };
}
