// FakeArvados bounds request bodies, authenticated or not (issue 18 item 14):
// a body larger than MAX_REQUEST_BODY is answered 413 without being read.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { FakeArvados } from '../../src/testing/index.js';
import { MAX_REQUEST_BODY } from '../../src/testing/fake-arvados.js';

let fake: FakeArvados;
beforeAll(async () => {
  fake = await new FakeArvados({ tls: false }).start();
});
afterAll(async () => {
  await fake.stop();
});

function post(headers: Record<string, string>, chunks: number): Promise<{ status: number; sent: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    const req = http.request(`${fake.url}/arvados/v1/containers`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, sent });
      req.destroy();
    });
    req.on('error', (err) => (sent > MAX_REQUEST_BODY ? resolve({ status: 0, sent }) : reject(err)));
    const chunk = Buffer.alloc(1024 * 1024, 'a');
    const write = (): void => {
      while (sent < chunks * chunk.length) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

describe('request body limit', () => {
  it('answers 413 to an unauthenticated streamed body past the limit, without reading it all', async () => {
    const r = await post({}, 64);
    // The server answers 413 and closes the connection; a client still
    // writing may see the reset before it reads the answer (status 0).
    expect([413, 0]).toContain(r.status);
    expect(r.sent).toBeLessThan(64 * 1024 * 1024);
    expect(fake.requests.at(-1)?.status).toBe(413);
  });

  it('answers 413 at once to a declared Content-Length past the limit', async () => {
    const r = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${fake.url}/arvados/v1/containers`, { method: 'POST', headers: { 'Content-Length': String(MAX_REQUEST_BODY + 1) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on('error', reject);
      req.write('x');
    });
    expect(r).toBe(413);
  });

  it('still serves ordinary bodies', async () => {
    const client = fake.client();
    const c = fake.addContainer({ priority: 1 });
    await expect(client.updateContainer(c.uuid, { priority: 2 })).resolves.toMatchObject({ priority: 2 });
    client.close();
  });
});
