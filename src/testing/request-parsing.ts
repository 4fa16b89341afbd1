/**
 * Reading an API request the way the API server does: the body (bounded),
 * the parameters from the query string and a form or JSON body (Rails'
 * JSON-encoded list parameters included), the resource attributes, and the
 * token.
 *
 * @module
 */
import type * as http from 'node:http';
import { ApiError } from './errors.js';

/**
 * Largest request body read, authenticated or not (the real API server's
 * front end caps bodies too): a larger one is answered 413 without being
 * read, so a client cannot grow the fake's memory at will.
 */
export const MAX_REQUEST_BODY = 8 * 1024 * 1024;

/** A request body over {@link MAX_REQUEST_BODY}. */
export class BodyTooLarge extends Error {}

const JSON_PARAMS = new Set(['filters', 'order', 'select', 'where', 'container', 'log', 'limit', 'offset']);
const HASH_ATTRS = ['environment', 'mounts', 'runtime_constraints', 'runtime_status', 'command', 'scheduling_parameters'];

/** The whole body as UTF-8; rejects with {@link BodyTooLarge} as soon as it is known to be too large. */
export function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > MAX_REQUEST_BODY) return reject(new BodyTooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > MAX_REQUEST_BODY) {
        req.off('data', onData);
        chunks.length = 0;
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function decodeValue(key: string, v: unknown): unknown {
  if (typeof v !== 'string' || !JSON_PARAMS.has(key)) return v;
  const s = v.trim();
  if (s.startsWith('[') || s.startsWith('{') || s.startsWith('"')) {
    try {
      return JSON.parse(s);
    } catch {
      throw new ApiError(422, `Could not parse "${key}" param as JSON`);
    }
  }
  return v;
}

/** The request's parameters: query string, then the body's (JSON or form), JSON-encoded ones decoded. */
export function parseParams(url: URL, body: string, contentType: string | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of url.searchParams) out[k] = v;
  if (body.trim() !== '') {
    if (contentType?.includes('application/json')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        throw new ApiError(400, 'Invalid JSON in request body');
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ApiError(400, 'Request body must be a JSON object');
      Object.assign(out, parsed);
    } else {
      for (const [k, v] of new URLSearchParams(body)) out[k] = v;
    }
  }
  for (const k of Object.keys(out)) out[k] = decodeValue(k, out[k]);
  return out;
}

/** The resource attributes: `container` / `log` as an object or JSON string, else top-level keys (Rails wrap_parameters). */
export function attrsParam(params: Record<string, unknown>, key: string): Record<string, unknown> {
  let attrs = params[key];
  if (attrs === undefined) {
    const { select: _s, _method: _m, api_token: _t, ...rest } = params;
    attrs = rest;
  }
  if (!attrs || typeof attrs !== 'object' || Array.isArray(attrs)) throw new ApiError(422, `"${key}" must be a JSON object`);
  const out = { ...(attrs as Record<string, unknown>) };
  for (const h of HASH_ATTRS) {
    if (typeof out[h] === 'string') {
      try {
        out[h] = JSON.parse(out[h] as string);
      } catch {
        throw new ApiError(422, `Could not parse "${h}" as JSON`);
      }
    }
  }
  return out;
}

/** The token of a request: the Authorization header, else the `api_token` parameter. */
export function tokenOf(req: http.IncomingMessage, params: Record<string, unknown>): string | undefined {
  const m = /^(?:OAuth2|Bearer) ([!-~]+)$/.exec(req.headers.authorization ?? '');
  if (m) return m[1];
  return typeof params.api_token === 'string' ? params.api_token : undefined;
}
