/**
 * Error classes of the client. Messages never contain the API token or any
 * piece of it: every text that came from the server or the transport is
 * redacted (token, its secret part, Authorization values) before it is cut
 * or stored, and no underlying transport error (whose request config holds the
 * Authorization header) is kept as a `cause`.
 *
 * @module
 */

/** Configuration is missing or invalid (e.g. no `ARVADOS_API_HOST`). */
export class ArvadosConfigError extends Error {
  override name = 'ArvadosConfigError';
}

/** Details of an {@link ArvadosApiError}. */
export interface ArvadosApiErrorDetails {
  /** HTTP status; 0 when no HTTP answer arrived (refused, reset, timeout, TLS). */
  status: number;
  /** The server's `errors[]`, or a description of what went wrong (already redacted). */
  errors: string[];
  /** The `X-Request-Id` the request was sent with (the same on every retry). */
  requestId?: string;
  /** True when trying again later may succeed (transport errors, 429, 5xx but 501). */
  retryable: boolean;
  /**
   * A short machine-readable reason, e.g. `ECONNREFUSED`, `ENOTFOUND`,
   * `ETIMEDOUT`, `CERT_UNTRUSTED`, `ERESPONSETOOLARGE`.
   */
  code?: string;
  /** `GET containers`, for messages. */
  request: string;
  /** How many attempts were made. */
  attempts: number;
  /** For 429 and 503: the server's `Retry-After`, in ms. */
  retryAfter?: number;
}

function format(d: ArvadosApiErrorDetails): string {
  const what = d.errors.length ? d.errors.join('; ') : 'no details';
  const status = d.status ? `HTTP ${d.status}` : (d.code ?? 'no response');
  const tries = d.attempts > 1 ? ` after ${d.attempts} attempts` : '';
  // A transport error's description already says what happened; its code in
  // front of it would only repeat it ("ECONNREFUSED: connect ECONNREFUSED").
  return d.status ? `${d.request}: ${status}: ${what}${tries}` : `${d.request}: ${what}${tries}`;
}

/**
 * Any failed API call: a non-2xx answer, or no answer at all (`status` 0:
 * refused, reset, timed out, name not found, TLS not trusted, body too large).
 */
export class ArvadosApiError extends Error {
  override name = 'ArvadosApiError';
  /** HTTP status; 0 when no HTTP answer arrived. */
  readonly status: number;
  /** The server's `errors[]` (redacted), or what went wrong. */
  readonly errors: string[];
  /** The `X-Request-Id` of the call. */
  readonly requestId?: string;
  /** True when trying again later may succeed. */
  readonly retryable: boolean;
  /** A short machine-readable reason for status 0 (see {@link ArvadosApiErrorDetails.code}). */
  readonly code?: string;
  /** `METHOD path-pattern`, e.g. `POST containers/{uuid}/lock`. */
  readonly request: string;
  /** How many attempts were made. */
  readonly attempts: number;
  /**
   * For 429 and 503: how long the server asked us to wait (`Retry-After`),
   * in ms. Callers that pace themselves (e.g. a dispatcher's lock path with
   * `retries: 0`) use it to back off.
   */
  readonly retryAfter?: number;

  constructor(d: ArvadosApiErrorDetails) {
    super(format(d));
    this.status = d.status;
    this.errors = d.errors;
    this.requestId = d.requestId;
    this.retryable = d.retryable;
    this.code = d.code;
    this.request = d.request;
    this.attempts = d.attempts;
    if (d.retryAfter !== undefined) this.retryAfter = d.retryAfter;
  }
}

/**
 * A 2xx answer that breaks the API's protocol: not JSON, not the documented
 * record shape (e.g. `{"uuid": null}` from `api_client_authorizations/current`,
 * a lock answer for another container), or a success status carrying
 * `errors`. It is retryable when the request is idempotent (GET, PUT): asking
 * again cannot do anything twice. A POST (lock, unlock, logs) may have taken
 * effect, so it is not retried and `retryable` is false.
 */
export class ArvadosProtocolError extends ArvadosApiError {
  override name = 'ArvadosProtocolError';
}

/** True when `err` is an {@link ArvadosApiError} with the given HTTP status. */
export function isApiStatus(err: unknown, status: number): err is ArvadosApiError {
  return err instanceof ArvadosApiError && err.status === status;
}
