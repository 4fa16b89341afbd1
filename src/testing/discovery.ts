/**
 * The discovery document FakeArvados serves: what the real one says about
 * the server (its URLs, cluster id, page size cap, event stream) and the
 * container methods a dispatcher uses.
 *
 * @module
 */

/** What the document describes. */
export interface DiscoverySource {
  /** The server's base URL, e.g. `https://127.0.0.1:41234`. */
  url: string;
  clusterId: string;
  maxItemsPerResponse: number;
  /** The event stream's URL, when one is served. */
  websocketUrl?: string;
}

/** `GET /discovery/v1/apis/arvados/v1/rest`. */
export function discoveryDocument(src: DiscoverySource): unknown {
  const root = `${src.url}/`;
  const method = (path: string, httpMethod: string) => ({ path, httpMethod });
  return {
    kind: 'discovery#restDescription',
    discoveryVersion: 'v1',
    id: 'arvados:v1',
    name: 'arvados',
    version: 'v1',
    revision: '20250402',
    title: 'Arvados API (FakeArvados)',
    protocol: 'rest',
    rootUrl: root,
    baseUrl: `${root}arvados/v1/`,
    basePath: '/arvados/v1/',
    servicePath: 'arvados/v1/',
    batchPath: 'batch',
    uuidPrefix: src.clusterId,
    defaultCollectionReplication: 2,
    blobSignatureTtl: 1209600,
    maxRequestSize: 134217728,
    maxItemsPerResponse: src.maxItemsPerResponse,
    ...(src.websocketUrl ? { websocketUrl: src.websocketUrl } : {}),
    schemas: { Container: { id: 'Container', type: 'object', uuidPrefix: 'dz642' } },
    resources: {
      containers: {
        methods: {
          get: method('containers/{uuid}', 'GET'),
          list: method('containers', 'GET'),
          update: method('containers/{uuid}', 'PUT'),
          lock: method('containers/{uuid}/lock', 'POST'),
          unlock: method('containers/{uuid}/unlock', 'POST'),
        },
      },
    },
  };
}
