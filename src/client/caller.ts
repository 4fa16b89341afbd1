/**
 * One API call, the way the Go and Python SDKs send it: encoded once (Bearer
 * token, a request id kept across retries, JSON-encoded list parameters,
 * long queries as POST with `_method=GET`), then attempted until it succeeds
 * or may not be tried again. Each attempt is one bounded exchange whose
 * answer becomes the result or an {@link ArvadosApiError} carrying its retry
 * decision, and one `'request'` event.
 *
 * @module
 */
import type * as http from 'node:http';
import type * as https from 'node:https';
import { logger } from '../log.js';
import { describeError } from '../util/errors.js';
import type { Redactor } from '../util/redact.js';
import type { Clock } from '../util/sleep.js';
import { acceptAnswer, errorMessages, type Accepted } from './answers.js';
import { ArvadosApiError, ArvadosProtocolError, type ArvadosApiErrorDetails } from './errors.js';
import type { CallOptions, RequestEvent } from './options.js';
import { isRetryableStatus, parseRetryAfter, withRetries, type RetryDecision, type RetryPolicy } from './retry.js';
import { exchange, TransportError, type WireRequest, type WireResponse } from './transport.js';

const log = logger('client');

/** Bytes of a non-2xx body that are read at all; the rest is dropped unread. */
const MAX_ERROR_BYTES = 64 * 1024;

type Params = Record<string, unknown>;

/** An API call to make. */
export interface ApiRequest<T> {
  method: 'GET' | 'POST' | 'PUT';
  /** Under `/arvados/v1/`, or absolute (`/discovery/…`). */
  path: string;
  /** The path as a pattern, for messages and metrics, e.g. `containers/{uuid}`. */
  pattern: string;
  query?: Params;
  body?: Params;
  /** Turns the parsed 2xx answer into the result, or returns a reason it is malformed. */
  accept(parsed: unknown): Accepted<T>;
  /** Leave the token out (the discovery document needs none). */
  anonymous?: boolean;
  /** A lower bound on the answer's size than the client's `maxResponseBytes`. */
  maxBytes?: number;
}

/** Where `'request'` events go. */
export interface AttemptReporter {
  /** Whether anyone listens; when not, attempts are not timed. */
  listening(): boolean;
  /** Told once per attempt. */
  report(event: RequestEvent): void;
}

/** The settings of an {@link ApiCaller}: the client's, resolved and checked. */
export interface CallerSettings {
  /** `https://host:port`. */
  baseUrl: string;
  /** The Authorization header's value. */
  authorization: string;
  /** Masks the token in every message made of what the server sent. */
  redactor: Redactor;
  policy: RetryPolicy;
  /** Deadline of one attempt, ms. */
  timeout: number;
  /** Deadline of a whole call, ms. */
  deadline: number;
  /** Largest 2xx body, bytes. */
  maxBytes: number;
  /** Encoded query length above which a GET goes as POST with `_method=GET`. */
  maxQueryLength: number;
  httpAgent: http.Agent;
  httpsAgent: https.Agent;
  clock: Clock;
  random: () => number;
  events: AttemptReporter;
}

// How an attempt's error tells the retry loop what it means, without making
// the decision a field of the error (it would show in inspect and JSON).
const decisions = new WeakMap<object, RetryDecision>();
function decided(err: ArvadosApiError, decision: RetryDecision): ArvadosApiError {
  decisions.set(err, decision);
  return err;
}

/**
 * `req-` + 20 base-36 characters, like the Python SDK. Request ids only need
 * to be unique enough to find a request in server logs, not unguessable, so
 * Math.random is enough (and cheaper than crypto on every call).
 */
function newRequestId(): string {
  let id = 'req-';
  while (id.length < 24) id += Math.random().toString(36).slice(2, 12);
  return id.slice(0, 24);
}

/**
 * List parameters as the SDKs send them: strings as-is, everything else JSON;
 * `undefined`, `null` and `false` are left out as the Go SDK does.
 */
export function encodeParams(params: Params): URLSearchParams {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === false) continue;
    out.set(k, typeof v === 'string' ? v : JSON.stringify(v));
  }
  return out;
}

/** What every attempt of one call shares. */
interface CallState<T> {
  req: ApiRequest<T>;
  wire: WireRequest;
  requestId: string;
  /** `METHOD pattern`, for messages. */
  label: string;
  /** On the client's clock. */
  deadline: number;
  signal?: AbortSignal;
}

/** Makes API calls for one client. */
export class ApiCaller {
  // Private so that neither util.inspect nor JSON.stringify shows the token.
  readonly #s: CallerSettings;

  constructor(settings: CallerSettings) {
    this.#s = settings;
  }

  /**
   * One API call: the request is encoded once, then {@link withRetries} runs
   * {@link ApiCaller.#attempt} until it succeeds or may not be tried again.
   */
  call<T>(req: ApiRequest<T>, opts: CallOptions = {}): Promise<T> {
    const s = this.#s;
    const requestId = newRequestId();
    const url = new URL(req.path.startsWith('/') ? req.path : `/arvados/v1/${req.path}`, s.baseUrl);
    const headers: Record<string, string> = { 'X-Request-Id': requestId, Accept: 'application/json' };
    if (!req.anonymous) headers.Authorization = s.authorization;
    const wire: WireRequest = { method: req.method, url, headers };
    if (req.query) {
      const qs = encodeParams(req.query).toString();
      if (qs.length > s.maxQueryLength) {
        // Rails honours _method=GET in a form body; the URL stays short.
        wire.method = 'POST';
        wire.data = `_method=GET&${qs}`;
        headers['Content-Type'] = 'application/x-www-form-urlencoded';
        headers['X-Http-Method-Override'] = 'GET';
      } else if (qs) {
        url.search = qs;
      }
    } else if (req.body) {
      wire.data = JSON.stringify(req.body);
      headers['Content-Type'] = 'application/json';
    }
    const call: CallState<T> = {
      req,
      wire,
      requestId,
      label: `${req.method} ${req.pattern}`,
      deadline: s.clock.now() + (opts.deadline ?? s.deadline),
      signal: opts.signal,
    };
    return withRetries((n) => this.#attempt(call, n), {
      policy: opts.retries === undefined ? s.policy : { ...s.policy, retries: Math.max(0, opts.retries) },
      decide: (err) => (err instanceof Object && decisions.get(err)) || { retry: false },
      onRetry: (err, attempts, delay) =>
        log('%s (%s): %s; retry %d in %d ms', call.label, requestId, describeError(err), attempts, Math.round(delay)),
      signal: opts.signal,
      deadline: call.deadline,
      clock: s.clock,
      random: s.random,
    });
  }

  /**
   * Attempt number `n` (0 for the first) of a call: one exchange, its answer
   * interpreted, one `'request'` event. Throws an {@link ArvadosApiError}
   * carrying its retry decision, or the caller's abort reason.
   */
  async #attempt<T>(call: CallState<T>, n: number): Promise<T> {
    const s = this.#s;
    const started = performance.now();
    const report = (event: Omit<RequestEvent, 'method' | 'path' | 'durationMs' | 'attempt'>): void => {
      if (!s.events.listening()) return;
      const durationMs = performance.now() - started;
      s.events.report({ method: call.req.method, path: call.req.pattern, durationMs, attempt: n + 1, ...event });
    };
    const fail = (d: Omit<ArvadosApiErrorDetails, 'requestId' | 'request' | 'attempts'>, decision: RetryDecision, protocol = false): ArvadosApiError => {
      const details = { ...d, requestId: call.requestId, request: call.label, attempts: n + 1 };
      return decided(protocol ? new ArvadosProtocolError(details) : new ArvadosApiError(details), decision);
    };

    let res: WireResponse;
    try {
      res = await exchange(call.wire, {
        timeout: Math.min(s.timeout, Math.max(1, call.deadline - s.clock.now())),
        maxBytes: Math.min(s.maxBytes, call.req.maxBytes ?? Infinity),
        maxErrorBytes: MAX_ERROR_BYTES,
        signal: call.signal,
        httpAgent: s.httpAgent,
        httpsAgent: s.httpsAgent,
      });
    } catch (err) {
      if (!(err instanceof TransportError)) {
        report({ errorClass: 'aborted' });
        throw err;
      }
      report({ errorClass: err.code });
      const decision: RetryDecision = { retry: err.retryable, ...(err.maxRetries !== undefined ? { maxRetries: err.maxRetries } : {}) };
      throw fail({ status: 0, code: err.code, retryable: err.retryable, errors: [s.redactor.redact(err.message)] }, decision);
    }

    const { status, body } = res;
    if (status >= 200 && status < 300) {
      const r = acceptAnswer(body, call.req, s.redactor);
      if (r.ok) {
        report({ status });
        return r.value;
      }
      report({ status, errorClass: 'protocol' });
      // Asking again cannot do a GET or a PUT twice; a POST may already have taken effect.
      const idempotent = call.req.method !== 'POST';
      throw fail({ status, errors: [r.reason], retryable: idempotent }, { retry: idempotent }, true);
    }

    report({ status, errorClass: 'http' });
    const errors = errorMessages(res, s.redactor);
    const retryable = isRetryableStatus(status);
    const header = status === 429 || status === 503 ? res.headers['retry-after'] : undefined;
    const retryAfter = parseRetryAfter(typeof header === 'string' ? header : undefined, Date.now());
    const after = retryAfter !== undefined ? { retryAfter } : {};
    throw fail({ status, errors, retryable, ...after }, { retry: retryable, ...(retryAfter !== undefined ? { after: retryAfter } : {}) });
  }
}
