// crunch-run's command line and environment, and its output lines: pure
// parts of the local runner, checked without a child process.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from '@jest/globals';
import { LocalRunner } from '../../src/runners/local/index.js';
import { gatewayAuthSecret } from '../../src/runners/crunch-run.js';
import { MAX_LINE, Tail, eachLine } from '../../src/runners/local/output.js';
import { Redactor } from '../../src/util/redact.js';

const creds = { ARVADOS_API_HOST: 'h:1', ARVADOS_API_TOKEN: 'v2/zzzzz-gj3su-000000000000000/secretsecretsecret', ARVADOS_API_HOST_INSECURE: '0' };
const UUID = 'zzzzz-dz642-012345678901234';

describe('GatewayAuthSecret', () => {
  it('is the hex HMAC-SHA256 of the container UUID keyed by the system root token (known vector)', () => {
    // openssl: printf %s zzzzz-dz642-queuedcontainer | openssl dgst -sha256 -hmac xyzzy-systemroottoken
    expect(gatewayAuthSecret('xyzzy-systemroottoken', 'zzzzz-dz642-queuedcontainer')).toBe('895e5cabead17b9e717472f931a2b18d0aa64b5e5a1441748bd6a490be7a8d96');
  });

  it('is in crunch-run\'s environment only when a system root token is configured', () => {
    const without = new LocalRunner({ processEnv: {} }).commandFor(UUID, creds);
    expect(without.env).not.toHaveProperty('GatewayAuthSecret');
    const withToken = new LocalRunner({ processEnv: {}, systemRootToken: 'xyzzy-systemroottoken' }).commandFor(UUID, creds);
    expect(withToken.env.GatewayAuthSecret).toBe(gatewayAuthSecret('xyzzy-systemroottoken', UUID));
    expect(withToken.argv.join(' ')).not.toContain('xyzzy');
  });
});

describe('crunch-run environment options', () => {
  it('adds env, passes envPass names that are set, and never lets them override what the runner sets', () => {
    const r = new LocalRunner({
      processEnv: { PATH: '/bin', HOME: '/h', SINGULARITY_CACHEDIR: '/cache', UNRELATED: 'x' },
      env: { HTTP_PROXY: 'http://proxy:3128' },
      envPass: ['SINGULARITY_CACHEDIR', 'NOT_SET'],
    });
    expect(r.commandFor(UUID, creds).env).toEqual({ PATH: '/bin', SINGULARITY_CACHEDIR: '/cache', HTTP_PROXY: 'http://proxy:3128', ...creds });
    expect(() => new LocalRunner({ env: { ARVADOS_API_TOKEN: 'x' } })).toThrow(/ARVADOS_API_TOKEN is set by the runner/);
    expect(() => new LocalRunner({ envPass: ['GatewayAuthSecret'] })).toThrow(/GatewayAuthSecret is set by the runner/);
    expect(() => new LocalRunner({ env: { 'A=B': 'x' } })).toThrow(/not an environment variable name/);
    expect(() => new LocalRunner({ env: { A: 'x\0y' } })).toThrow(/NUL/);
  });
});

describe("crunch-run's output lines", () => {
  const secret = creds.ARVADOS_API_TOKEN;
  const pieces = (s: string): string[] => Array.from({ length: s.length - 7 }, (_, i) => s.slice(i, i + 8));

  it('masks a secret in a line longer than the split size, wherever the split falls', async () => {
    const redactor = new Redactor([secret]);
    for (const offset of [-30, -8, -1, 0, 5]) {
      const stream = new PassThrough();
      const lines: string[] = [];
      eachLine(stream, redactor, (l) => lines.push(l));
      const text = `${'a'.repeat(MAX_LINE + offset)}${secret}${'b'.repeat(3 * MAX_LINE)}\nnext ${secret}\n`;
      // In small chunks, so the split happens while the line is still arriving.
      for (let i = 0; i < text.length; i += 4000) stream.write(text.slice(i, i + 4000));
      stream.end();
      await new Promise((r) => stream.on('end', r));
      const all = lines.join('\n');
      const leaked = pieces(secret.split('/')[2]).filter((p) => all.includes(p));
      expect(leaked).toEqual([]);
      expect(lines.every((l) => l.length <= MAX_LINE + 1024)).toBe(true);
      expect(lines.at(-1)).toBe('next ***');
    }
  });

  it('keeps only the last lines of stderr, each cut to its width', () => {
    const t = new Tail(3, 10);
    for (const l of ['one', 'two', 'three', 'four', 'a very long line indeed']) t.push(l);
    expect(t.toString()).toBe('three\nfour\na very lo…');
  });
});

describe('one launch for every runner', () => {
  it('takes systemRootToken explicitly in every runner, and keys GatewayAuthSecret by it only', async () => {
    const { SlurmRunner, LsfRunner, SgeRunner } = await import('../../src/runners/index.js');
    const { crunchRunArgv, crunchRunSecrets } = await import('../../src/runners/crunch-run.js');
    for (const make of [(o: object) => new SlurmRunner(o), (o: object) => new LsfRunner(o), (o: object) => new SgeRunner({ user: 'crunch', ...o })]) {
      expect(make({ systemRootToken: 'root' }).options.systemRootToken).toBe('root');
      expect(make({}).options.systemRootToken).toBeUndefined();
      expect(() => make({ systemRootToken: '' })).toThrow(/systemRootToken/);
      expect(() => make({ environment: { ARVADOS_API_TOKEN: 'x' } })).toThrow(/set by the runner/);
    }
    expect(() => new LocalRunner({ systemRootToken: '' })).toThrow(/systemRootToken/);
    expect(crunchRunSecrets(UUID, creds, undefined)).toEqual(creds);
    expect(crunchRunSecrets(UUID, creds, 'xyzzy-systemroottoken').GatewayAuthSecret).toBe(gatewayAuthSecret('xyzzy-systemroottoken', UUID));
    // The same argv for local and batch: args, then the engine, then the UUID.
    expect(crunchRunArgv('crunch-run', ['--x'], UUID, 'docker')).toEqual(['crunch-run', '--x', '--runtime-engine=docker', UUID]);
    expect(new LocalRunner({ crunchRunArgs: ['--x'], runtimeEngine: 'docker', processEnv: {} }).commandFor(UUID, creds).argv).toEqual(crunchRunArgv('crunch-run', ['--x'], UUID, 'docker'));
  });
});
