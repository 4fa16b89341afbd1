/**
 * Options, per-call options and events of `ArvadosClient`, in one place.
 *
 * @module
 */
import type * as http from 'node:http';
import type { Clock } from '../util/sleep.js';

/**
 * Default {@link ArvadosClientOptions.maxResponseBytes}: 144 MiB. The largest
 * page the API server legitimately sends is bounded by its
 * `API.MaxIndexDatabaseRead` (128 MiB by default) for the big columns
 * (mounts, command, environment…) of up to `MaxItemsPerResponse` records; the
 * small columns of 1,000 records add well under 16 MiB.
 */
export const DEFAULT_MAX_RESPONSE_BYTES = 144 * 2 ** 20;

/**
 * Default `maxItems` of `pageContainers`: a walk that has read this many
 * items and is still given more stops with an `ArvadosProtocolError`, so a
 * server whose pages never end cannot grow memory without bound. Far above
 * any real cluster's queue.
 */
export const DEFAULT_MAX_WALK_ITEMS = 500_000;

/** Options of `ArvadosClient`. */
export interface ArvadosClientOptions {
  /**
   * `host[:port]` of the API server; https is assumed. An explicit
   * `http://` or `https://` prefix is accepted too (e.g. for a plain-HTTP
   * test server).
   */
  apiHost: string;
  /** The API token. It is sent only in the Authorization header and never logged. */
  apiToken: string;
  /** Skip TLS certificate verification (`ARVADOS_API_HOST_INSECURE`). Default false. */
  insecure?: boolean;
  /** Deadline of one attempt in ms, from connect to the last byte of the answer. Default 30 000. */
  timeout?: number;
  /**
   * Deadline of a whole call in ms, every attempt and wait between them
   * included: no retry starts that could not begin before it. Default 120 000
   * (the Go `arvadosclient`'s).
   */
  deadline?: number;
  /** Retries after the first attempt, for retryable failures only. Default 4. */
  retries?: number;
  /** First retry delay in ms (grows exponentially, with jitter). Default 500. */
  retryDelay?: number;
  /** Cap on a computed retry delay, ms. Default 10 000. */
  maxRetryDelay?: number;
  /** A `Retry-After` above this many ms gives up instead of waiting. Default 60 000. */
  maxRetryAfter?: number;
  /**
   * Largest answer body accepted, in bytes (counted as it arrives; a longer
   * answer fails with code `ERESPONSETOOLARGE` and is not retried). Default
   * {@link DEFAULT_MAX_RESPONSE_BYTES}.
   */
  maxResponseBytes?: number;
  /** Extra CA certificates (PEM) to trust, e.g. `FakeArvados#caCert`. */
  ca?: string | string[];
  /** Encoded query length above which a GET is sent as POST with `_method=GET`. Default 1000. */
  maxQueryLength?: number;
  /**
   * An agent for the connections, e.g. one that tunnels through a proxy
   * (https-proxy-agent). `HTTPS_PROXY` is not read: reaching an https API
   * through a proxy needs a CONNECT tunnel, which is the agent's job, and
   * resolving proxy settings per request costs more than the request itself
   * on a fast local network.
   */
  agent?: http.Agent;
  /** The clock retries wait on (tests pass a fake one). Default: the real clock. */
  clock?: Clock;
  /** Randomness for the backoff jitter, in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborts the call, including any wait between retries. */
  signal?: AbortSignal;
  /**
   * Retries for this call instead of the client's `retries`. `0` hands every
   * failure, 503s included, straight to the caller (with
   * `ArvadosApiError.retryAfter`), for callers that pace themselves.
   */
  retries?: number;
  /** Deadline of this call in ms instead of the client's `deadline`. */
  deadline?: number;
}

/**
 * One HTTP attempt, as told to `'request'` listeners (for metrics). Paths are
 * patterns (`containers/{uuid}/lock`), never uuids, so they make good labels.
 */
export interface RequestEvent {
  /** The HTTP method of the API call (`GET` also when a long query went as POST). */
  method: string;
  /** e.g. `containers`, `containers/{uuid}/lock`, `api_client_authorizations/current`. */
  path: string;
  /** The HTTP status, when an answer arrived. */
  status?: number;
  /** Time of this attempt, ms. */
  durationMs: number;
  /** 1 for the first attempt of a call, 2 for its first retry… */
  attempt: number;
  /**
   * Why the attempt failed, when it did: a transport code (`ECONNREFUSED`,
   * `ETIMEDOUT`, `ENOTFOUND`, `ERESPONSETOOLARGE`, a TLS code), `http` for a
   * non-2xx answer (see `status`), `protocol` for a malformed answer,
   * `aborted` when the caller aborted.
   */
  errorClass?: string;
}

/** Something the client noticed that is not an error of the call, e.g. a dropped list item. */
export interface ClientWarning {
  message: string;
  /** The container concerned, when known and a valid container UUID. */
  uuid?: string;
}

/**
 * Events of `ArvadosClient`: `'request'` once per HTTP attempt,
 * `'warning'` for malformed list items that were dropped (rate-limited: at
 * most once per item every 10 minutes). A listener that throws does not
 * disturb the call.
 */
export interface ArvadosClientEvents {
  request: [RequestEvent];
  warning: [ClientWarning];
}
