/**
 * Error classes of the client. Messages never contain the API token: they are
 * built from the method, path, status and the server's `errors[]` only, and no
 * underlying transport error (whose request config holds the Authorization
 * header) is kept as a `cause`.
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
  /** The server's `errors[]`, or a description of what went wrong. */
  errors: string[];
  /** The `X-Request-Id` the request was sent with (the same on every retry). */
  requestId?: string;
  /** True when trying again later may succeed (transport errors, 429, 5xx but 501). */
  retryable: boolean;
  /** A short machine-readable reason for status 0, e.g. `ECONNREFUSED`, `ETIMEDOUT`, `CERT_UNTRUSTED`. */
  code?: string;
  /** `GET /arvados/v1/containers`, for messages. */
  request: string;
  /** How many attempts were made. */
  attempts: number;
}

/**
 * Any failed API call: a non-2xx answer, an answer that is not valid JSON, or
 * no answer at all (`status` 0).
 */
export class ArvadosApiError extends Error {
  override name = 'ArvadosApiError';
  readonly status: number;
  readonly errors: string[];
  readonly requestId?: string;
  readonly retryable: boolean;
  readonly code?: string;
  readonly request: string;
  readonly attempts: number;

  constructor(d: ArvadosApiErrorDetails) {
    const what = d.errors.length ? d.errors.join('; ') : 'no details';
    const status = d.status ? `HTTP ${d.status}` : (d.code ?? 'no response');
    const tries = d.attempts > 1 ? ` after ${d.attempts} attempts` : '';
    super(`${d.request}: ${status}: ${what}${tries}`);
    this.status = d.status;
    this.errors = d.errors;
    this.requestId = d.requestId;
    this.retryable = d.retryable;
    this.code = d.code;
    this.request = d.request;
    this.attempts = d.attempts;
  }
}

/** True when `err` is an {@link ArvadosApiError} with the given HTTP status. */
export function isApiStatus(err: unknown, status: number): err is ArvadosApiError {
  return err instanceof ArvadosApiError && err.status === status;
}
