/**
 * FakeArvados' HTTP request handler: reads and routes each request, counts
 * and records it, applies overrides, injected faults and added latency, and
 * answers the calls a dispatcher makes from the store with the API server's
 * rules and error bodies.
 *
 * @module
 */
import type * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Container } from '../types.js';
import { isContainerState, unknownAttribute, WRITABLE_ATTRS } from './container-rules.js';
import { ApiError } from './errors.js';
import { answerAfterProcessing, answerBeforeProcessing } from './fault-answers.js';
import { pickFault, type FaultRule } from './faults.js';
import { Overrides } from './overrides.js';
import { Reply } from './reply.js';
import { RequestLog, type RequestRecord } from './request-log.js';
import { attrsParam, BodyTooLarge, MAX_REQUEST_BODY, parseParams, readBody, tokenOf } from './request-parsing.js';
import { routeOf, type Route } from './routes.js';
import type { Store } from './store.js';

/** What the handler needs of the server it runs in. */
export interface ApiHandlerHost {
  readonly store: Store;
  /** False once the server stopped: a request still waiting out its latency is then dropped. */
  serving(): boolean;
  /** The discovery document, as served now. */
  discovery(): unknown;
}

/** Answers the fake's API requests; its faults, latency and overrides are the server's settings. */
export class ApiHandler {
  /** Counters and records of the requests served. */
  readonly log: RequestLog;
  /** Canned answers in force. */
  readonly overrides = new Overrides();
  /** Fault injection rules, checked in order. */
  faults: FaultRule[] = [];
  /** Milliseconds added to every request. */
  latency: number;
  readonly #host: ApiHandlerHost;

  /** `opts.requests` is where records are kept, when `opts.recordRequests`. */
  constructor(host: ApiHandlerHost, opts: { recordRequests: boolean; requests: RequestRecord[]; latency: number }) {
    this.#host = host;
    this.log = new RequestLog(opts.recordRequests, opts.requests);
    this.latency = opts.latency;
  }

  /** Serves one request; never rejects. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const incomingId = req.headers['x-request-id'];
    const requestId =
      typeof incomingId === 'string' && incomingId.length >= 1 && incomingId.length <= 1024
        ? incomingId
        : `req-${randomBytes(10).toString('hex').slice(0, 20)}`;
    const url = new URL(req.url ?? '/', 'http://x');
    const record: RequestRecord = { route: 'unknown', method: req.method ?? 'GET', path: url.pathname, status: 0, requestId };
    let body = '';
    try {
      body = await readBody(req);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        record.status = 413;
        this.log.keep(record);
        // Close the connection: the rest of the body is never read.
        res.writeHead(413, { 'Content-Type': 'application/json', Connection: 'close', 'X-Request-Id': requestId });
        res.end(JSON.stringify({ errors: [`request body larger than ${MAX_REQUEST_BODY} bytes`] }), () => req.socket.destroy());
      }
      return;
    }
    if (this.latency > 0) await new Promise((r) => setTimeout(r, this.latency));
    if (!this.#host.serving()) {
      req.socket.destroy();
      return;
    }

    let params: Record<string, unknown> = {};
    let method = record.method;
    let parseError: ApiError | undefined;
    try {
      params = parseParams(url, body, req.headers['content-type']);
      const override = (typeof params._method === 'string' ? params._method : undefined) ?? req.headers['x-http-method-override'];
      if (method === 'POST' && typeof override === 'string') method = override.toUpperCase();
    } catch (err) {
      parseError = err instanceof ApiError ? err : new ApiError(422, String(err));
    }
    const route = routeOf(method, url.pathname);
    record.route = route.name;
    record.uuid = route.uuid;
    this.log.counted(route.name);
    if (route.name === 'containers.list') record.params = params;
    this.log.keep(record);
    const reply = new Reply(req, res, record);

    const override = this.overrides.take(route.name);
    if (override) {
      record.fault = 'override';
      const payload = override.body === undefined ? '' : override.body;
      reply.send(override.status, payload, override.headers);
      return;
    }

    const picked = pickFault(this.faults, route.name);
    const fault = picked?.kind;
    const pick = (n: number): number => Math.floor((picked?.rule.random ?? Math.random)() * n);
    if (picked) {
      record.fault = picked.kind;
      if (answerBeforeProcessing(picked, reply, pick)) return;
    }

    let status = 200;
    let payload: unknown;
    try {
      if (parseError) throw parseError;
      payload = this.#serve(route, params, req, record);
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(500, `#<RuntimeError: ${(err as Error).message}>`);
      if (fault === undefined) return reply.error(e);
      status = e.status;
      payload = reply.envelope(e);
    }
    answerAfterProcessing(fault, status, payload, reply, pick);
  }

  /** The answer of an API call on `route`, or the API's error thrown. */
  #serve(route: Route, params: Record<string, unknown>, req: http.IncomingMessage, record: RequestRecord): unknown {
    const store = this.#host.store;
    if (route.name === 'discovery') return this.#host.discovery();
    if (route.name === 'unknown') throw new ApiError(404, 'Path not found');
    const caller = store.authenticate(tokenOf(req, params));
    if (!caller) throw new ApiError(401, 'Not logged in');
    record.tokenUuid = caller.uuid;
    const uuid = route.uuid ?? '';
    switch (route.name) {
      case 'current':
        return {
          kind: 'arvados#apiClientAuthorization',
          etag: '',
          uuid: caller.uuid,
          api_token: caller.secret,
          owner_uuid: caller.owner_uuid,
          scopes: ['all'],
          expires_at: null,
          created_at: null,
          created_by_ip_address: null,
          last_used_at: null,
          last_used_by_ip_address: null,
          modified_at: null,
          modified_by_user_uuid: null,
        };
      case 'containers.list':
        return store.list(params);
      case 'containers.get':
        return store.get(uuid, params.select);
      case 'containers.create': {
        if (!caller.admin) throw new ApiError(403, '#<ArvadosModel::PermissionDeniedError: ArvadosModel::PermissionDeniedError>');
        const attrs = attrsParam(params, 'container');
        for (const k of Object.keys(attrs)) {
          if (!WRITABLE_ATTRS.has(k)) throw unknownAttribute(k);
        }
        if (attrs.state !== undefined && !isContainerState(attrs.state)) throw new ApiError(422, 'State is not included in the list');
        return store.create(attrs as Partial<Container>);
      }
      case 'containers.update':
        return store.update(uuid, attrsParam(params, 'container'), caller, params.select);
      case 'containers.lock':
        return store.lock(uuid, caller);
      case 'containers.unlock':
        return store.unlock(uuid, caller);
      case 'logs.create':
        return store.createLog(attrsParam(params, 'log'), caller);
      case 'logs.list':
        return { kind: 'arvados#logList', etag: '', self_link: '', offset: 0, limit: store.logs.length, items: store.logs, items_available: store.logs.length };
    }
  }
}
