// No piece of the token in anything the client produces: error messages,
// their string and JSON forms, and debug output. Against a real FakeArvados
// whose answers are proxy pages that echo the request's headers.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import createDebug from 'debug';
import type { ArvadosClient } from '../../src/index.js';
import { logger } from '../../src/log.js';
import { FakeArvados } from '../../src/testing/index.js';
import { fragmentsIn } from './fragments.js';
import { failure } from '../helpers/failure.js';

const texts = (e: unknown): string => [String(e), (e as Error).message, JSON.stringify(e)].join('\n');

describe('token safety', () => {
  let fake: FakeArvados;
  let client: ArvadosClient;
  let token: string;
  let secret: string;
  beforeAll(async () => {
    fake = await new FakeArvados({ tls: false }).start();
    token = fake.rootToken.token;
    secret = token.split('/')[2] ?? token;
    client = fake.client({ retries: 0 });
  });
  afterAll(async () => {
    client.close();
    await fake.stop();
  });
  afterEach(() => fake.clearOverride());

  const proxyPages = (): string[] => [
    // The classic: a proxy's debug page printing the request headers.
    `<html><body><h1>502 Bad Gateway</h1><pre>GET /arvados/v1/api_client_authorizations/current\nAuthorization: Bearer ${token}\nX-Request-Id: req-1</pre></body></html>`,
    // The token split by markup, so no whole token is left to find.
    `<p>upstream said: ${secret.slice(0, 20)}<b></b>${secret.slice(20)}</p>`,
    // The token right at the point where an excerpt would be cut.
    `${'x'.repeat(100)} ${token} ${'y'.repeat(100)}`,
    // JSON that is not an Arvados error body.
    JSON.stringify({ message: 'denied', headers: { authorization: `OAuth2 ${token}` } }),
  ];

  it.each([502, 401, 200])('a proxy page echoing the token (HTTP %i) leaves no 8-character piece of it in the error', async (status) => {
    for (const body of proxyPages()) {
      fake.override('current', { status, body, headers: { 'Content-Type': 'text/html' } });
      const e = await failure(client.currentAuthorization());
      expect(fragmentsIn(texts(e), secret)).toEqual([]);
      expect(e.message.length).toBeLessThan(400);
    }
  });

  it('an Arvados error body that quotes the token is redacted before it is cut', async () => {
    const long = `${'z'.repeat(480)} ${token} and more`;
    fake.override('current', { status: 422, body: { errors: [`token ${token} is bad`, long] } });
    const e = await failure(client.currentAuthorization());
    expect(e.errors[0]).toBe('token *** is bad');
    expect(fragmentsIn(texts(e), secret)).toEqual([]);
  });

  it('debug output is redacted', () => {
    const lines: string[] = [];
    const saved = createDebug.log;
    createDebug.log = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
    createDebug.enable('arvados-dispatch:secrets-test');
    try {
      const log = logger('secrets-test');
      log('sending %s with %O', `Authorization: Bearer ${token}`, { header: `Bearer ${token}`, piece: secret.slice(3, 30) });
    } finally {
      createDebug.disable();
      createDebug.log = saved;
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('sending');
    expect(fragmentsIn(lines[0], secret)).toEqual([]);
  });

  it('client.redact masks the token and its pieces for callers', () => {
    const text = client.redact(`a ${token} b ${secret.slice(10, 30)} c`);
    expect(fragmentsIn(text, secret)).toEqual([]);
    expect(text).toContain('a ');
  });
});
