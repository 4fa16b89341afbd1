/**
 * A bare HTTP(S) request with Node builtins only, for the crunch-run
 * simulator (which must start fast and run from `dist` without
 * dependencies) and for tests that must control every byte of a request
 * rather than go through {@link ArvadosClient}.
 *
 * @module
 */
import * as http from 'node:http';
import * as https from 'node:https';

/** What {@link rawRequest} sends. */
export interface RawRequest {
  /** Absolute URL, or a path resolved against {@link RawRequest.base}. */
  path: string;
  /** Base URL, e.g. `https://127.0.0.1:41234`, or an `ARVADOS_API_HOST` value (`host:port` means HTTPS). */
  base?: string;
  /** Default `GET`. */
  method?: string;
  /** Sent as `Authorization: Bearer <token>` when given. */
  token?: string | null;
  /** A string is sent as is (form-encoded unless a Content-Type is given); anything else as JSON. */
  body?: string | object;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** A PEM certificate to trust (the fake's own). */
  ca?: string;
  /** Skip certificate verification, as `ARVADOS_API_HOST_INSECURE` does. */
  insecure?: boolean;
  /** Milliseconds before the request is given up. Default: none. */
  timeout?: number;
  /** Aborts the request. */
  signal?: AbortSignal;
  /** Hang up once this many characters of the body have arrived (for endless bodies); the answer then has `cut: true`. */
  limit?: number;
}

/** A response read to its end. */
export interface RawResponse {
  /** The HTTP status. */
  status: number;
  /** The response headers, lower-cased. */
  headers: http.IncomingHttpHeaders;
  /** The body as received (up to {@link RawRequest.limit}). */
  text: string;
  /** The parsed JSON object, or undefined when the body is not a JSON object. */
  json: Record<string, unknown> | undefined;
  /** True when the body was cut at {@link RawRequest.limit} and the connection closed. */
  cut?: boolean;
}

/** The base URL for an `ARVADOS_API_HOST` value: `host:port` means HTTPS. */
export function baseUrl(apiHost: string): string {
  return /^https?:\/\//.test(apiHost) ? apiHost : `https://${apiHost}`;
}

/** Sends one request and reads the whole answer; rejects on a network error, a timeout or an abort. */
export function rawRequest(req: RawRequest): Promise<RawResponse> {
  const url = new URL(req.path, req.base === undefined ? undefined : baseUrl(req.base));
  const headers: Record<string, string> = { ...req.headers };
  if (req.token) headers.Authorization = `Bearer ${req.token}`;
  let data: string | undefined;
  if (req.body !== undefined) {
    data = typeof req.body === 'string' ? req.body : JSON.stringify(req.body);
    headers['Content-Type'] ??= typeof req.body === 'string' ? 'application/x-www-form-urlencoded' : 'application/json';
  }
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const r = mod.request(
      url,
      {
        method: req.method ?? 'GET',
        headers,
        ca: req.ca,
        rejectUnauthorized: req.insecure !== true,
        signal: req.signal,
        timeout: req.timeout,
        // One connection per request: a simulator exits right after its last call.
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          if (req.limit !== undefined && text.length >= req.limit) {
            res.removeAllListeners('end');
            r.destroy();
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: undefined, cut: true });
          }
        });
        res.on('error', reject);
        res.on('end', () => {
          let json: Record<string, unknown> | undefined;
          try {
            const v: unknown = JSON.parse(text);
            json = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    r.on('timeout', () => r.destroy(new Error(`${req.method ?? 'GET'} ${url.pathname}: no answer after ${req.timeout} ms`)));
    r.on('error', reject);
    r.end(data);
  });
}
