/**
 * Reading the API's answers: a 2xx body becomes the call's result or the
 * reason it breaks the protocol, and an error body becomes the server's
 * `errors[]` or a short excerpt. Whatever comes from the server is redacted
 * before it is cut, so no piece of the token survives in a message.
 *
 * @module
 */
import { redactAndCut, type Redactor } from '../util/redact.js';
import type { WireResponse } from './transport.js';

/** Characters of a body that is not Arvados JSON that may appear in an error. */
const EXCERPT_CHARS = 120;
/** Characters of one of the server's `errors[]` that may appear in an error. */
const MESSAGE_CHARS = 500;
/** How many of the server's `errors[]` are kept. */
const MAX_MESSAGES = 5;

/** A parsed 2xx answer as a call's result, or why it is malformed. */
export type Accepted<T> = { ok: true; value: T } | { ok: false; reason: string };

/** The JSON type of a value, for messages that must not quote the value. */
export function kindOf(x: unknown): string {
  return x === null ? 'null' : Array.isArray(x) ? 'array' : typeof x;
}

const NOT_JSON = Symbol('not JSON');

/** The parsed body, or {@link NOT_JSON}. */
function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return NOT_JSON;
  }
}

/** The server's `errors[]` when `parsed` is an Arvados error body; redacted, then cut. */
function errorsOf(parsed: unknown, redactor: Redactor): string[] | undefined {
  const errors = (parsed as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors)) return undefined;
  return errors
    .slice(0, MAX_MESSAGES)
    .map((e) => redactAndCut(typeof e === 'string' ? e : (JSON.stringify(e) ?? String(e)), MESSAGE_CHARS, redactor));
}

/** A short, single-line excerpt of a body that is not the JSON we expected: redacted whole, then cut. */
function excerpt(body: string, redactor: Redactor): string {
  const clean = redactor.redact(body);
  const text = clean.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  // Removing markup could join what it separated; mask again before cutting.
  return redactAndCut(text, EXCERPT_CHARS, redactor);
}

/**
 * A 2xx body as the call's result (`req.accept` turns the parsed object
 * into it), or why it breaks the protocol: empty, not JSON, errors with a
 * success status, not an object, or malformed. Reasons are redacted.
 */
export function acceptAnswer<T>(body: string, req: { accept(parsed: unknown): Accepted<T> }, redactor: Redactor): Accepted<T> {
  if (body === '') return { ok: false, reason: 'empty response body' };
  const parsed = parseJson(body);
  if (parsed === NOT_JSON) return { ok: false, reason: `response is not valid JSON: ${excerpt(body, redactor)}` };
  const errors = errorsOf(parsed, redactor);
  if (errors && errors.length > 0) return { ok: false, reason: `success status with errors: ${errors.join('; ')}` };
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, reason: `expected a JSON object, got ${kindOf(parsed)}` };
  }
  const r = req.accept(parsed);
  return r.ok ? r : { ok: false, reason: `malformed answer (${r.reason})` };
}

/**
 * The messages of a non-2xx answer: the server's `errors[]`, else its
 * status text with an excerpt of a body that is not an API error body.
 */
export function errorMessages(res: WireResponse, redactor: Redactor): string[] {
  const { body } = res;
  return errorsOf(parseJson(body), redactor) ?? [
    `${res.statusText || 'error'}${body ? ` (not an API error body: ${excerpt(body, redactor)})` : ''}`,
  ];
}
