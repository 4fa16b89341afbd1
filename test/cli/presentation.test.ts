// Presentation rules of the CLI: whole-line redaction before any split,
// bounded reporter state, the live view's size fallback, crunch-run's
// extra environment, and the management listener's settings.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from '@jest/globals';
import { ArvadosClient } from '../../src/client/client.js';
import { DISPATCHER_OPTIONS, parseCommandLine } from '../../src/cli/args.js';
import { crunchRunEnvironment } from '../../src/cli/commands/local.js';
import { UsageError } from '../../src/cli/errors.js';
import { terminalSize } from '../../src/cli/live.js';
import { MAX_OUTPUT_LINE, Output } from '../../src/cli/output.js';
import { Reporter } from '../../src/cli/report.js';
import { managementSettings, parseListen } from '../../src/cli/service.js';
import { Dispatcher } from '../../src/dispatcher/dispatcher.js';
import type { Container } from '../../src/types.js';

const TOKEN = 'v2/zzzzz-gj3su-012345678901234/Qf3kLm9Zp2Xw7Rt5Vb8Nc1Hy4Jd6Gs0EkTu2Wq9Ao5Ix3Pl7Br';
const SECRET = TOKEN.split('/')[2];
const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-presentation-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  return { stream, text: () => text };
}

/** Every 8-character piece of the token's secret part found in `text`. */
function fragments(text: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 8 <= SECRET.length; i++) if (text.includes(SECRET.slice(i, i + 8))) found.push(SECRET.slice(i, i + 8));
  return found;
}

function dispatcher(): Dispatcher {
  return new Dispatcher({ client: new ArvadosClient({ apiHost: '127.0.0.1:1', apiToken: TOKEN }), runContainer: async () => {}, handleSignals: false });
}

describe('redaction before cutting', () => {
  it('a token across the 16 KiB split of a long line is masked, not printed in halves', () => {
    const out = capture();
    const o = new Output({ stdout: out.stream, stderr: out.stream });
    o.addSecret(TOKEN);
    // The token straddles the 16 KiB mark of the line as printed (after the 9-character time).
    const line = `${'x'.repeat(MAX_OUTPUT_LINE - 9 - 30)}${TOKEN} and more${'w'.repeat(200)}`;
    o.event('output', line);
    const lines = out.text().split('\n').filter(Boolean);
    expect(lines.length).toBe(2);
    expect(lines.every((l) => l.length <= MAX_OUTPUT_LINE)).toBe(true);
    expect(fragments(out.text())).toEqual([]);
    expect(out.text()).toContain('***');
  });

  it('masks token shapes it was never told about, in text and JSON lines and warnings', () => {
    const out = capture();
    const o = new Output({ stdout: out.stream, stderr: out.stream });
    o.event('output', `proxy said Authorization: Bearer ${SECRET}`);
    o.warn(`echo ${TOKEN}`);
    const j = capture();
    const oj = new Output({ json: true, stdout: j.stream });
    oj.event('output', 'x', { line: `authorization: OAuth2 ${SECRET}`, nested: { token: TOKEN } });
    oj.warn(`${TOKEN}`);
    expect(fragments(out.text() + j.text())).toEqual([]);
    for (const l of j.text().trim().split('\n')) JSON.parse(l);
  });
});

describe('the reporter', () => {
  it('keeps bounded state: 10,000 finished containers are counted once each without an entry each', () => {
    const o = new Output({ stdout: new PassThrough(), stderr: new PassThrough() });
    const d = dispatcher();
    const r = new Reporter(o, d);
    for (let i = 0; i < 10_000; i++) {
      const uuid = `zzzzz-dz642-${String(i).padStart(15, '0')}`;
      const c = { uuid, state: i % 10 === 0 ? 'Cancelled' : 'Complete' } as Container;
      d.emit('stream-ended', uuid, 'finished', c);
      // The same end reported again (the dispatcher's release of a cancelled one) is not counted twice.
      if (i % 10 === 0) d.emit('released', uuid, 'cancelled', 'Running');
    }
    expect(r.counts()).toMatchObject({ done: 10_000, complete: 9_000, cancelled: 1_000 });
    expect(r.remembered).toBeLessThanOrEqual(4096);
  });
});

describe('the live view', () => {
  it.each([
    [{ columns: 0, rows: 0 }, { columns: 80, rows: 24 }],
    [{}, { columns: 80, rows: 24 }],
    [{ columns: 132, rows: 50 }, { columns: 132, rows: 50 }],
    [{ columns: 10, rows: 2 }, { columns: 20, rows: 5 }],
  ])('draws %j as %j', (stream, size) => expect(terminalSize(stream)).toEqual(size));
});

describe("crunch-run's extra environment", () => {
  it('takes NAME=VALUE (the value may hold "=") and names to pass on', () => {
    expect(crunchRunEnvironment(['A=1', 'B=x=y', 'C='], ['HTTPS_PROXY'])).toEqual({ env: { A: '1', B: 'x=y', C: '' }, envPass: ['HTTPS_PROXY'] });
  });

  it.each([
    [['NOEQUALS'], [], /--env: "NOEQUALS" is not NAME=VALUE/],
    [['=x'], [], /--env: "=x" is not NAME=VALUE/],
    [['1A=x'], [], /--env: "1A" is not an environment variable name/],
    [['ARVADOS_API_TOKEN=x'], [], /--env: ARVADOS_API_TOKEN is set by the runner and cannot be given/],
    [[], ['A-B'], /--env-pass: "A-B" is not an environment variable name/],
    [[], ['ARVADOS_API_HOST'], /--env-pass: ARVADOS_API_HOST is set by the runner/],
  ])('refuses %j %j', (env, pass, message) => {
    expect(() => crunchRunEnvironment(env, pass)).toThrow(UsageError);
    expect(() => crunchRunEnvironment(env, pass)).toThrow(message);
  });
});

describe('management listener settings', () => {
  const table = { ...DISPATCHER_OPTIONS };

  it.each([
    ['127.0.0.1:9005', { host: '127.0.0.1', port: 9005 }],
    [':9005', { host: '', port: 9005 }],
    ['[::1]:9005', { host: '::1', port: 9005 }],
    ['http://0.0.0.0:9005/', { host: '0.0.0.0', port: 9005 }],
  ])('--listen %s', (text, want) => expect(parseListen(text)).toMatchObject(want));

  it.each(['9005', 'host', 'host:99999', 'host:port', '[::1]'])('refuses --listen %s', (text) => expect(() => parseListen(text)).toThrow(RangeError));

  it('a listener without a token is disabled, not refused (as the Go services)', () => {
    const opts = parseCommandLine(['--listen', '127.0.0.1:0'], table, 'local', {});
    expect(managementSettings(opts)).toEqual({ listen: [{ host: '127.0.0.1', port: 0, url: '127.0.0.1:0' }], token: undefined });
  });

  it('an https InternalURL gets TLS.Certificate and TLS.Key (file:// or a path); without them it is a configuration error', () => {
    writeFileSync(join(dir, 'cert.pem'), 'CERT');
    writeFileSync(join(dir, 'key.pem'), 'KEY');
    const cfg = join(dir, 'tls.yml');
    writeFileSync(
      cfg,
      `Clusters:\n  zzzzz:\n    TLS:\n      Certificate: file://${dir}/cert.pem\n      Key: ${dir}/key.pem\n    Services:\n      DispatchSLURM:\n        InternalURLs:\n          "https://127.0.0.1:9006/": {}\n`,
    );
    const s = managementSettings(parseCommandLine(['--config', cfg], table, 'slurm', {}));
    expect(s?.listen).toEqual([{ host: '127.0.0.1', port: 9006, url: 'https://127.0.0.1:9006/', tls: true }]);
    expect(s?.tls?.cert.toString()).toBe('CERT');
    expect(s?.tls?.key.toString()).toBe('KEY');
    expect(() => managementSettings(parseCommandLine(['--listen', 'https://127.0.0.1:0/'], table, 'local', {}))).toThrow(/an https:\/\/ management address needs TLS\.Certificate in the cluster config/);
  });

  it('reads the token from --management-token-file, else ManagementToken', () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'tok-from-file\n', { mode: 0o600 });
    expect(managementSettings(parseCommandLine(['--listen', ':0', '--management-token-file', file], table, 'local', {}))?.token).toBe('tok-from-file');
    const cfg = join(dir, 'config.yml');
    writeFileSync(cfg, 'Clusters:\n  zzzzz:\n    ManagementToken: tok-from-config\n    Services:\n      DispatchSLURM:\n        InternalURLs:\n          "http://127.0.0.1:9006/": {}\n');
    const s = managementSettings(parseCommandLine(['--config', cfg], table, 'slurm', {}));
    expect(s).toEqual({ token: 'tok-from-config', listen: [{ host: '127.0.0.1', port: 9006, url: 'http://127.0.0.1:9006/' }] });
    // local has no InternalURLs of its own: no listener unless --listen.
    expect(managementSettings(parseCommandLine(['--config', cfg], table, 'local', {}))).toBeUndefined();
  });

  it('refuses a token file readable by group or others, as ssh does with keys', () => {
    const open = join(dir, 'open-token');
    writeFileSync(open, 'tok-from-file\n', { mode: 0o644 });
    chmodSync(open, 0o644);
    expect(() => managementSettings(parseCommandLine(['--listen', ':0', '--management-token-file', open], table, 'local', {}))).toThrow(
      `--management-token-file: ${open} is accessible by group or others (mode 0644); chmod 600 it`,
    );
    chmodSync(open, 0o640);
    expect(() => managementSettings(parseCommandLine(['--listen', ':0', '--management-token-file', open], table, 'local', {}))).toThrow(/mode 0640/);
    chmodSync(open, 0o400);
    expect(managementSettings(parseCommandLine(['--listen', ':0', '--management-token-file', open], table, 'local', {}))?.token).toBe('tok-from-file');
  });

  it('refuses an empty or missing token file', () => {
    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n', { mode: 0o600 });
    expect(() => managementSettings(parseCommandLine(['--listen', ':0', '--management-token-file', empty], table, 'local', {}))).toThrow(/is empty/);
    expect(() => managementSettings(parseCommandLine(['--listen', ':0', '--management-token-file', join(dir, 'nope')], table, 'local', {}))).toThrow(/cannot read .*ENOENT/);
  });
});
