// A bare HTTP(S) request to FakeArvados, for tests that must control every
// byte of the request (paths, bodies, headers) rather than go through the client.
import http from 'node:http';
import https from 'node:https';
import type { FakeArvados } from '../../src/testing/index.js';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  // Parsed JSON, or undefined when the body is not JSON.
  json: Record<string, unknown> | undefined;
}

export function raw(
  fake: FakeArvados,
  req: { method: string; path: string; token?: string | null; body?: string | object; headers?: Record<string, string> },
): Promise<RawResponse> {
  const url = new URL(req.path, fake.url);
  const headers: Record<string, string> = { ...req.headers };
  if (req.token) headers.Authorization = `Bearer ${req.token}`;
  let data: string | undefined;
  if (req.body !== undefined) {
    data = typeof req.body === 'string' ? req.body : JSON.stringify(req.body);
    headers['Content-Type'] ??= typeof req.body === 'string' ? 'application/x-www-form-urlencoded' : 'application/json';
  }
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const r = mod.request(url, { method: req.method, headers, ca: fake.caCert }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    r.on('error', reject);
    if (data !== undefined) r.write(data);
    r.end();
  });
}
