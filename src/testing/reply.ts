/**
 * How FakeArvados answers one request: JSON bodies with the request id, the
 * API's error envelopes, and the raw writes some faults need. Every answer
 * notes its status in the request's record.
 *
 * @module
 */
import type * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { ApiError } from './errors.js';
import type { RequestRecord } from './request-log.js';

/** The answer to one request. */
export class Reply {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  /** The request's record; its `route` decides the error envelope. */
  readonly record: RequestRecord;

  constructor(req: http.IncomingMessage, res: http.ServerResponse, record: RequestRecord) {
    this.req = req;
    this.res = res;
    this.record = record;
  }

  /** The request id, echoed in answers and error messages. */
  get requestId(): string {
    return this.record.requestId;
  }

  /**
   * Sends `payload` as JSON, or a string as is; a string's Content-Type may
   * be given in `headers`.
   */
  send(status: number, payload: unknown, headers: Record<string, string> = {}): void {
    this.record.status = status;
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
    this.res.writeHead(status, {
      'Content-Type': typeof payload === 'string' && headers['Content-Type'] ? headers['Content-Type'] : 'application/json; charset=utf-8',
      'X-Request-Id': this.requestId,
      ...headers,
    });
    this.res.end(text);
  }

  /** Sends exactly `text` with exactly `headers`, as a proxy or a broken server would. */
  raw(status: number, headers: Record<string, string>, text: string): void {
    this.record.status = status;
    this.res.writeHead(status, headers);
    this.res.end(text);
  }

  /** The API's error body for `err`. */
  envelope(err: ApiError): unknown {
    if (this.record.route === 'current') {
      // Served by the Go controller: Rails' text wrapped, no error_token.
      const text = err.status === 401
        ? `//railsapi.internal/arvados/v1/api_client_authorizations/current: 401 Unauthorized: ${err.messages.join('; ')} (${this.requestId})`
        : `${err.messages.join('; ')} (${this.requestId})`;
      return { errors: [text] };
    }
    return {
      errors: err.messages.map((m) => `${m} (${this.requestId})`),
      error_token: `${Math.floor(Date.now() / 1000)}+${randomBytes(4).toString('hex')}`,
    };
  }

  /** Sends `err` as the API does. */
  error(err: ApiError): void {
    this.send(err.status, this.envelope(err));
  }
}
