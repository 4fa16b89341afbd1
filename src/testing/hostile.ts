/**
 * Hostile answers FakeArvados can serve: what a broken or adversarial API
 * server or proxy sends a dispatcher. A dispatcher must survive every one of
 * them without losing, double-running or cancelling a container, and without
 * printing or storing any piece of its token. The payloads are exported so
 * that tests can check them (e.g. that no runner ever saw a hostile uuid).
 *
 * @module
 */

/**
 * The hostile fault kinds:
 * - `null-item`: a list answer gets a `null` among its real items; a
 *   single-record answer is `null`.
 * - `malformed-items`: a list answer gets {@link MALFORMED_ITEMS} among its
 *   real items; a single-record answer is one of them.
 * - `hostile-uuid`: a list answer gets a copy of one of its real items (so
 *   with the same state and lock holder) whose `uuid` is one of
 *   {@link HOSTILE_UUIDS}; a single-record answer has its `uuid` replaced.
 * - `echo-headers`: a 502 HTML proxy page that echoes the request, headers
 *   first (`Authorization` included), answered before processing.
 * - `errors-200`: status 200 with only `{"errors": [...]}`, answered before
 *   processing (the change did not happen).
 * - `endless`: a 200 JSON body that never ends (plausible container items,
 *   written as fast as the client reads them) until the client hangs up or
 *   the fake stops; answered before processing.
 * - `bad-identity`: on `api_client_authorizations/current` only, a 200 with
 *   one of {@link BAD_IDENTITIES}.
 *
 * The first three are applied to the real answer, *after* the request was
 * processed (a lock did happen).
 */
export type HostileFaultKind = 'null-item' | 'malformed-items' | 'hostile-uuid' | 'echo-headers' | 'errors-200' | 'endless' | 'bad-identity';

/** Every hostile kind, in the order documented on {@link HostileFaultKind}. */
export const HOSTILE_FAULTS: readonly HostileFaultKind[] = [
  'null-item',
  'malformed-items',
  'hostile-uuid',
  'echo-headers',
  'errors-200',
  'endless',
  'bad-identity',
];

/** Kinds that only apply to some routes (the rest apply to every route but `discovery`). */
export const ROUTE_LIMITED_FAULTS: Readonly<Partial<Record<HostileFaultKind, readonly string[]>>> = {
  'bad-identity': ['current'],
};

/** The list items (and single-record bodies) `malformed-items` serves. */
export const MALFORMED_ITEMS: readonly unknown[] = [42, 'str', {}, [], true, { uuid: 7 }, { uuid: 'zzzzz-dz642-000000000000000' }];

/**
 * UUIDs `hostile-uuid` serves: path traversal, shell syntax, an option, a
 * newline, the wrong object type, upper case, a long string, an empty one.
 */
export const HOSTILE_UUIDS: readonly string[] = [
  'zzzzz-dz642-../../../etc/x',
  '$(touch /tmp/arvados-dispatch-pwned)',
  '--help',
  'zzzzz-dz642-aaaaaaaaaaaaaaa\nFAKE LOG LINE',
  'zzzzz-gj3su-aaaaaaaaaaaaaaa',
  'ZZZZZ-DZ642-AAAAAAAAAAAAAAA',
  `zzzzz-dz642-${'a'.repeat(4096)}`,
  '',
];

/** Bodies `bad-identity` serves for `api_client_authorizations/current`. */
export const BAD_IDENTITIES: readonly unknown[] = [
  { uuid: null },
  { uuid: 42 },
  { uuid: '' },
  {},
  { uuid: 'not-a-uuid' },
  { uuid: 'zzzzz-tpzed-000000000000000' },
  { kind: 'arvados#apiClientAuthorization', uuid: ['zzzzz-gj3su-000000000000000'] },
  null,
];

/** A 502 page from a proxy that echoes the request it could not forward, headers first. */
export function echoPage(method: string, url: string, rawHeaders: readonly string[]): string {
  const lines: string[] = [];
  // Authorization first: an excerpt cut at any length then holds the token.
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() === 'authorization') lines.push(`${rawHeaders[i]}: ${rawHeaders[i + 1]}`);
  }
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() !== 'authorization') lines.push(`${rawHeaders[i]}: ${rawHeaders[i + 1]}`);
  }
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return (
    `<html><body><pre>${esc(lines.join('\n'))}\n\n${esc(`${method} ${url} HTTP/1.1`)}</pre>\n` +
    '<h1>502 Bad Gateway</h1><p>The upstream server did not answer this request.</p><hr>fake-proxy/1.0\n</body></html>\n'
  );
}

/** An item the endless body repeats. */
export const ENDLESS_ITEM = '{"uuid":"zzzzz-dz642-000000000000000","state":"Queued","priority":1,"locked_by_uuid":null},';

/**
 * `payload` with the hostile change of `kind` applied, for the three kinds
 * that alter a real answer; `pick` chooses among variants and positions.
 * Returns the new payload and a description of what was served.
 */
export function corruptAnswer(
  kind: 'null-item' | 'malformed-items' | 'hostile-uuid',
  payload: unknown,
  pick: (n: number) => number,
): { payload: unknown; detail: string } {
  const isList = payload !== null && typeof payload === 'object' && Array.isArray((payload as { items?: unknown }).items);
  if (isList) {
    const list = payload as { items: unknown[] };
    const items = [...list.items];
    const insert = (v: unknown): void => void items.splice(pick(items.length + 1), 0, v);
    let detail: string;
    if (kind === 'null-item') {
      insert(null);
      detail = 'null';
    } else if (kind === 'malformed-items') {
      for (const m of MALFORMED_ITEMS) insert(m);
      detail = JSON.stringify(MALFORMED_ITEMS);
    } else {
      const uuid = HOSTILE_UUIDS[pick(HOSTILE_UUIDS.length)];
      const model = list.items.find((x): x is Record<string, unknown> => x !== null && typeof x === 'object');
      insert({ ...(model ?? { state: 'Queued', priority: 1 }), uuid });
      detail = JSON.stringify(uuid);
    }
    return { payload: { ...list, items }, detail };
  }
  if (kind === 'null-item') return { payload: null, detail: 'null' };
  if (kind === 'malformed-items') {
    const v = MALFORMED_ITEMS[pick(MALFORMED_ITEMS.length)];
    return { payload: v, detail: JSON.stringify(v) };
  }
  const uuid = HOSTILE_UUIDS[pick(HOSTILE_UUIDS.length)];
  const base = payload !== null && typeof payload === 'object' && !Array.isArray(payload) ? payload : {};
  return { payload: { ...base, uuid }, detail: JSON.stringify(uuid) };
}
