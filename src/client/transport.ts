/**
 * One HTTP exchange, bounded: a deadline for the whole exchange (connect to
 * last byte, not an idle timeout), and a cap on the bytes of the body, counted
 * as they arrive so an answer that never ends fails as soon as it passes the
 * cap instead of growing the process. Transport failures become one clear line
 * (`cannot connect to 127.0.0.1:1 (connection refused)`), with a code for
 * programs and a retry rule: name-resolution failures are retried at most
 * once, TLS verification failures never.
 *
 * @module
 */
import type * as http from 'node:http';
import type * as https from 'node:https';
import type { Readable } from 'node:stream';
import axios from 'axios';
import { describeError } from '../util/errors.js';

/** What to send. */
export interface WireRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  data?: string;
}

/** Limits and plumbing of one exchange. */
export interface WireOptions {
  /** The exchange's deadline, ms from now. */
  timeout: number;
  /** Bytes a 2xx body may have; a longer one fails the exchange (`ERESPONSETOOLARGE`). */
  maxBytes: number;
  /**
   * Bytes kept of a non-2xx body; the rest is not read. An error body only
   * contributes a short excerpt or the server's `errors`, and its status alone
   * decides what happens next.
   */
  maxErrorBytes: number;
  signal?: AbortSignal;
  httpAgent: http.Agent;
  httpsAgent: https.Agent;
}

/** An HTTP answer, body decoded as UTF-8. */
export interface WireResponse {
  status: number;
  statusText: string;
  headers: Readonly<http.IncomingHttpHeaders>;
  body: string;
}

/**
 * No usable HTTP answer. The message is one line made of the host and a
 * phrase for the code, never of anything the server sent.
 */
export class TransportError extends Error {
  override name = 'TransportError';
  /** e.g. `ECONNREFUSED`, `ENOTFOUND`, `ETIMEDOUT`, `ERESPONSETOOLARGE`, `CERT_HAS_EXPIRED`. */
  readonly code: string;
  /** Whether another attempt may succeed. */
  readonly retryable: boolean;
  /** A cap on retries for this kind of failure, below the client's policy. */
  readonly maxRetries?: number;

  constructor(message: string, code: string, retryable: boolean, maxRetries?: number) {
    super(message);
    this.code = code;
    this.retryable = retryable;
    if (maxRetries !== undefined) this.maxRetries = maxRetries;
  }
}

// OpenSSL/Node verification failures. Retrying cannot fix any of them.
const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

/** True when a Node error code means "the server's certificate was not accepted". */
export function isTlsVerificationCode(code: string | undefined): boolean {
  return code !== undefined && TLS_CODES.has(code);
}

const PHRASES: Record<string, (host: string, hostname: string) => string> = {
  ECONNREFUSED: (h) => `cannot connect to ${h} (connection refused)`,
  ECONNRESET: (h) => `connection to ${h} was reset`,
  EPIPE: (h) => `connection to ${h} was closed while sending`,
  EHOSTUNREACH: (h) => `cannot reach ${h} (host unreachable)`,
  ENETUNREACH: (h) => `cannot reach ${h} (network unreachable)`,
  ENOTFOUND: (_h, n) => `cannot resolve host name ${n} (not found)`,
  EAI_AGAIN: (_h, n) => `cannot resolve host name ${n} (temporary DNS failure)`,
  ERR_SOCKET_CONNECTION_TIMEOUT: (h) => `cannot connect to ${h} (connect timed out)`,
};

function codeOf(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown }; errors?: Array<{ code?: unknown }> } | null;
  const c = e?.cause?.code ?? e?.code ?? e?.errors?.[0]?.code;
  return typeof c === 'string' ? c : undefined;
}

/** Classifies a failed exchange. `timedOut` says our own deadline fired. */
function transportError(err: unknown, url: URL, timeout: number, timedOut: boolean): TransportError {
  let code = codeOf(err);
  if (timedOut || code === 'ECONNABORTED' || code === 'ERR_CANCELED' || code === 'ETIMEDOUT') {
    return new TransportError(`no complete answer from ${url.host} within ${timeout} ms`, 'ETIMEDOUT', true);
  }
  if (isTlsVerificationCode(code)) {
    return new TransportError(
      `TLS certificate of ${url.host} is not trusted (${code}); ` +
        'if this is a test server you trust, set ARVADOS_API_HOST_INSECURE=1',
      code!,
      false,
    );
  }
  const phrase = code ? PHRASES[code] : undefined;
  if (phrase) {
    // A name that does not resolve rarely starts resolving a second later;
    // one more try covers a resolver hiccup without minutes of retries.
    const dns = code === 'ENOTFOUND' || code === 'EAI_AGAIN';
    return new TransportError(phrase(url.host, url.hostname), code!, true, dns ? 1 : undefined);
  }
  // Unknown failures: Node's own text, without the code repeated in front of it.
  code ??= 'EIO';
  const text = describeError(err).replace(new RegExp(`^(${code}:?\\s*)+`), '');
  return new TransportError(`request to ${url.host} failed (${code}): ${text.slice(0, 200)}`, code, true);
}

/**
 * Sends `req` through axios and reads the answer within `opts.timeout` and
 * `opts.maxBytes`. Rejects with a {@link TransportError}, or with
 * `opts.signal`'s reason when the caller aborted.
 *
 * The body comes as a stream so that it is counted as it arrives (an answer
 * that never ends fails at the cap instead of growing the process); axios's
 * own buffering, redirects, proxy handling and status checks are off because
 * the client decides all of those itself.
 */
export async function exchange(req: WireRequest, opts: WireOptions): Promise<WireResponse> {
  // One controller and one timer per exchange: cheaper on the lock path than
  // AbortSignal.timeout() combined with AbortSignal.any().
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort(new Error('timeout'));
  }, Math.max(1, opts.timeout));
  const onCallerAbort = (): void => ac.abort(opts.signal!.reason);
  if (opts.signal?.aborted) onCallerAbort();
  else opts.signal?.addEventListener('abort', onCallerAbort, { once: true });
  const fail = (err: unknown): never => {
    if (opts.signal?.aborted) throw opts.signal.reason;
    throw err instanceof TransportError ? err : transportError(err, req.url, opts.timeout, timedOut);
  };
  let stream: Readable | undefined;
  const onAbort = (): void => {
    stream?.destroy();
  };
  ac.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const res = await client.request<Readable>({
      method: req.method,
      url: req.url.href,
      headers: req.headers,
      data: req.data,
      signal: ac.signal,
      httpAgent: opts.httpAgent,
      httpsAgent: opts.httpsAgent,
    });
    stream = res.data;
    if (ac.signal.aborted) stream.destroy();
    const status = res.status;
    const ok = status >= 200 && status < 300;
    const { text, complete } = await readBody(stream, ok ? opts.maxBytes : opts.maxErrorBytes, !ok, req.url);
    // The rest of a cut error body is not wanted; a complete one leaves the
    // connection to be reused (422s are routine on the lock path).
    if (!complete) stream.destroy();
    return { status, statusText: res.statusText ?? '', headers: res.headers as http.IncomingHttpHeaders, body: text };
  } catch (err) {
    stream?.destroy();
    if (ac.signal.aborted) return fail(new Error('aborted'));
    return fail(err);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onCallerAbort);
    ac.signal.removeEventListener('abort', onAbort);
  }
}

// The request settings that never change, set once: the body comes as a
// stream so that it is counted as it arrives, and axios's own buffering,
// redirects, proxy handling and status checks are off because the client
// decides all of those itself.
const client = axios.create({
  adapter: 'http',
  responseType: 'stream',
  validateStatus: () => true,
  maxRedirects: 0,
  proxy: false,
});

function readBody(stream: Readable, max: number, truncate: boolean, url: URL): Promise<{ text: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (): void => {
      stream.removeListener('data', onData);
      stream.pause();
    };
    const onData = (chunk: Buffer): void => {
      if (size + chunk.length <= max) {
        chunks.push(chunk);
        size += chunk.length;
        return;
      }
      // Past the cap: stop reading at once; the caller drops the connection.
      stop();
      if (truncate) {
        chunks.push(chunk.subarray(0, max - size));
        resolve({ text: Buffer.concat(chunks, max).toString('utf8'), complete: false });
      } else {
        reject(new TransportError(`answer from ${url.host} is larger than the limit of ${max} bytes (maxResponseBytes)`, 'ERESPONSETOOLARGE', false));
      }
    };
    stream.on('data', onData);
    stream.once('end', () => resolve({ text: Buffer.concat(chunks, size).toString('utf8'), complete: true }));
    stream.once('error', reject);
    // Destroyed (our deadline or abort) or cut off by the server before the
    // end: no complete answer. After 'end' this rejection is a no-op.
    stream.once('close', () => reject(Object.assign(new Error('connection closed before the answer was complete'), { code: 'ECONNRESET' })));
  });
}
