// Bounded requests and clear network errors, against real local servers:
// one that streams a 200 body for ever, one that trickles bytes, a closed
// port, and a host name that does not resolve.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from '@jest/globals';
import { ArvadosClient, type RequestEvent } from '../../src/index.js';
import { TestClock } from '../../src/testing/index.js';
import { failure } from '../helpers/failure.js';
import { onClock } from './on-clock.js';

const TOKEN = 'v2/zzzzz-gj3su-000000000000000/limitstestsecret0123456789abcdefghijklmnopq';

const servers: http.Server[] = [];
async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

describe('bounded requests', () => {
  it('an endless 200 body fails fast at maxResponseBytes and the connection is dropped', async () => {
    let written = 0;
    let closed!: () => void;
    const connectionClosed = new Promise<void>((r) => (closed = r));
    const apiHost = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"items":[');
      const chunk = `${'{"uuid":"zzzzz-dz642-000000000000000"},'.repeat(1000)}`;
      const pump = (): void => {
        // Write while the socket takes it; stop when the client hung up.
        while (!res.destroyed && res.write(chunk)) written += chunk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      res.on('close', closed);
      pump();
    });
    const client = new ArvadosClient({ apiHost, apiToken: TOKEN, maxResponseBytes: 1 << 20, retries: 3, retryDelay: 1 });
    const e = await failure(client.listContainers());
    expect(e.code).toBe('ERESPONSETOOLARGE');
    expect(e.retryable).toBe(false);
    expect(e.attempts).toBe(1);
    expect(e.message).toContain('maxResponseBytes');
    await connectionClosed;
    // What the server got out before the hang-up is the cap plus what was in flight, not more.
    expect(written).toBeLessThan(32 << 20);
    client.close();
  });

  it('a body that trickles in is cut off by the total deadline, not kept alive by each byte', async () => {
    const apiHost = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const timer = setInterval(() => res.write(' '), 20);
      res.on('close', () => clearInterval(timer));
    });
    const client = new ArvadosClient({ apiHost, apiToken: TOKEN, timeout: 300, retries: 0 });
    const e = await failure(client.currentAuthorization());
    expect(e.code).toBe('ETIMEDOUT');
    expect(e.message).toContain('within 300 ms');
    client.close();
  });

  it('a call stops retrying at its deadline', async () => {
    let hits = 0;
    const apiHost = await serve((_req, res) => {
      hits++;
      res.writeHead(500).end('{}');
    });
    // The waits and the deadline on a test clock: attempts at 0, 40, 80, 120
    // and 160 s, and the next wait would end at the deadline. (Each attempt's
    // socket timeout is what is left of the deadline, in real ms: tens of
    // seconds here, so a loaded machine cannot turn a 500 into a timeout.)
    const clock = new TestClock(0);
    const client = new ArvadosClient({ apiHost, apiToken: TOKEN, retries: 100, retryDelay: 40_000, maxRetryDelay: 40_000, clock });
    const e = await failure(onClock(clock, client.currentAuthorization({ deadline: 200_000 })));
    expect(e.status).toBe(500);
    expect(hits).toBe(5);
    expect(e.attempts).toBe(hits);
    expect(clock.now()).toBe(160_000);
    client.close();
  });

  it('only the first part of a huge error body is read', async () => {
    const apiHost = await serve((_req, res) => {
      res.writeHead(502, { 'Content-Type': 'text/html' });
      const pump = (): void => {
        while (!res.destroyed && res.write(`<p>${'bad gateway '.repeat(100)}</p>`));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    });
    const client = new ArvadosClient({ apiHost, apiToken: TOKEN, retries: 0 });
    const e = await failure(client.currentAuthorization());
    expect(e.status).toBe(502);
    expect(e.message.length).toBeLessThan(300);
    client.close();
  });
});

describe('bounded pages and walks (issue 18 item 6)', () => {
  /** A server whose container pages never end: each holds `limit` (or `n`) valid, increasing UUIDs after the cursor. */
  async function endlessPages(n?: (limit: number) => number): Promise<{ apiHost: string; requests: () => number }> {
    let requests = 0;
    let next = 0;
    const apiHost = await serve((req, res) => {
      requests++;
      const url = new URL(req.url ?? '/', 'http://x');
      const limit = Number(url.searchParams.get('limit') ?? 100);
      const items = Array.from({ length: n ? n(limit) : limit }, () => ({
        uuid: `zzzzz-dz642-${String(next++).padStart(15, '0')}`,
        state: 'Queued',
        priority: 1,
        locked_by_uuid: null,
        modified_at: '2024-01-01T00:00:00Z',
      }));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ kind: 'arvados#containerList', offset: 0, limit, items }));
    });
    return { apiHost: apiHost.replace('http://', ''), requests: () => requests };
  }
  const client = (apiHost: string): ArvadosClient => new ArvadosClient({ apiHost: `http://${apiHost}`, apiToken: TOKEN, retries: 0 });
  const select = ['uuid', 'state', 'priority', 'locked_by_uuid', 'modified_at'] as const;

  it('a page with more items than the limit asked for is a bad answer', async () => {
    const { apiHost } = await endlessPages((limit) => limit * 100);
    const e = await failure(client(apiHost).listContainers({ limit: 10, select }));
    expect(e.name).toBe('ArvadosProtocolError');
    expect(e.message).toMatch(/1000 items for limit 10/);
  });

  it('a page of small fields far bigger than its limit allows is cut off while it arrives', async () => {
    const { apiHost } = await endlessPages(() => 20_000);
    const e = await failure(client(apiHost).listContainers({ limit: 10, select }));
    expect(e.code).toBe('ERESPONSETOOLARGE');
  });

  it('a walk whose pages never end stops at maxItems with a protocol error', async () => {
    const { apiHost, requests } = await endlessPages();
    let items = 0;
    const walk = async (): Promise<void> => {
      for await (const page of client(apiHost).pageContainers({ limit: 100, select, maxItems: 1_000 })) items += page.items.length;
    };
    const e = await failure(walk());
    expect(e.name).toBe('ArvadosProtocolError');
    expect(e.message).toMatch(/more than 1000 items; stopped reading/);
    expect(items).toBe(1_000);
    expect(requests()).toBe(10);
  });
});

describe('connections', () => {
  it('a complete error answer leaves the keep-alive connection for the next request', async () => {
    let connections = 0;
    const apiHost = await serve((req, res) => {
      const lock = req.url?.endsWith('/lock');
      res.writeHead(lock ? 422 : 200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(lock ? { errors: ['#<ArvadosModel::LockFailedError: cannot lock when Locked>'] } : { uuid: 'zzzzz-gj3su-000000000000000' }));
    });
    servers[0].on('connection', () => connections++);
    const client = new ArvadosClient({ apiHost, apiToken: TOKEN, retries: 0 });
    for (let i = 0; i < 5; i++) {
      await failure(client.lockContainer('zzzzz-dz642-000000000000000'));
      await client.currentAuthorization();
    }
    expect(connections).toBe(1);
    client.close();
  });

  it('a gzip-encoded answer is decoded, and its limit counts the decoded bytes', async () => {
    const items = Array.from({ length: 200 }, (_, i) => ({ uuid: `zzzzz-dz642-${String(i).padStart(15, '0')}`, state: 'Queued', priority: 1, locked_by_uuid: null }));
    const body = gzipSync(JSON.stringify({ items, offset: 0, limit: 1000 }));
    const apiHost = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' }).end(body);
    });
    const client = new ArvadosClient({ apiHost, apiToken: TOKEN, retries: 0 });
    expect((await client.listContainers()).items).toHaveLength(200);
    const small = new ArvadosClient({ apiHost, apiToken: TOKEN, retries: 0, maxResponseBytes: body.length * 2 });
    expect((await failure(small.listContainers())).code).toBe('ERESPONSETOOLARGE');
    client.close();
    small.close();
  });
});

describe('network errors', () => {
  it('a refused connection reads as one line without repeated codes', async () => {
    const client = new ArvadosClient({ apiHost: 'http://127.0.0.1:1', apiToken: TOKEN, retries: 1, retryDelay: 1 });
    const e = await failure(client.currentAuthorization());
    expect(e.code).toBe('ECONNREFUSED');
    expect(e.message).toBe('GET api_client_authorizations/current: cannot connect to 127.0.0.1:1 (connection refused) after 2 attempts');
    expect(String(e)).not.toMatch(/ECONNREFUSED.*ECONNREFUSED/);
    client.close();
  });

  it('a host name that does not resolve is retried at most once', async () => {
    const client = new ArvadosClient({ apiHost: 'no-such-host.invalid', apiToken: TOKEN, retries: 5, retryDelay: 1 });
    const attempts: RequestEvent[] = [];
    client.on('request', (ev) => attempts.push(ev));
    const e = await failure(client.currentAuthorization());
    expect(['ENOTFOUND', 'EAI_AGAIN']).toContain(e.code);
    expect(e.message).toContain('cannot resolve host name no-such-host.invalid');
    expect(attempts.length).toBeLessThanOrEqual(2);
    expect(e.attempts).toBe(attempts.length);
    client.close();
  });
});
