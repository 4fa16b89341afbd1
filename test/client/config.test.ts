import { mkdtempSync, mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { ArvadosClient, ArvadosConfigError } from '../../src/index.js';
import { parseInsecure, parseSettingsFile, settingsFromEnv } from '../../src/client/config.js';

function homeWith(settings: string): string {
  const home = mkdtempSync(join(tmpdir(), 'arvhome-'));
  mkdirSync(join(home, '.config', 'arvados'), { recursive: true });
  writeFileSync(join(home, '.config', 'arvados', 'settings.conf'), settings);
  return home;
}

describe('configuration', () => {
  it('reads the three variables from the environment', () => {
    expect(settingsFromEnv({ ARVADOS_API_HOST: 'h.example:443', ARVADOS_API_TOKEN: 't', ARVADOS_API_HOST_INSECURE: 'yes' })).toEqual({
      apiHost: 'h.example:443',
      apiToken: 't',
      insecure: true,
    });
  });

  it('parses ARVADOS_API_HOST_INSECURE like the Go SDK', () => {
    for (const v of ['1', 'yes', 'true', 'TRUE', 'Yes ']) expect(parseInsecure(v)).toBe(true);
    for (const v of [undefined, '', '0', 'no', 'false', 'y']) expect(parseInsecure(v)).toBe(false);
  });

  it('falls back to settings.conf, and the environment wins', () => {
    const home = homeWith('# a comment\nARVADOS_API_HOST = file.example\nARVADOS_API_TOKEN=filetoken\nnot a setting\nOTHER=1\nARVADOS_API_HOST_INSECURE=true\n');
    expect(settingsFromEnv({ HOME: home })).toEqual({ apiHost: 'file.example', apiToken: 'filetoken', insecure: true });
    expect(settingsFromEnv({ HOME: home, ARVADOS_API_TOKEN: 'envtoken', ARVADOS_API_HOST_INSECURE: '0' })).toEqual({
      apiHost: 'file.example',
      apiToken: 'envtoken',
      insecure: false,
    });
  });

  it('skips lines without = and keys not starting with ARVADOS_', () => {
    expect(parseSettingsFile('x\n#ARVADOS_API_HOST=a\n ARVADOS_API_TOKEN = a=b \r\n')).toEqual({ ARVADOS_API_TOKEN: 'a=b' });
  });

  it('names what is missing', () => {
    const home = mkdtempSync(join(tmpdir(), 'arvhome-'));
    expect(() => settingsFromEnv({ HOME: home })).toThrow(/ARVADOS_API_HOST and ARVADOS_API_TOKEN are not set/);
    expect(() => settingsFromEnv({ HOME: home, ARVADOS_API_HOST: 'x' })).toThrow(/^ARVADOS_API_TOKEN is not set/);
    expect(() => ArvadosClient.fromEnv({ ARVADOS_API_TOKEN: 'secret-token-value' })).toThrow(ArvadosConfigError);
    try {
      ArvadosClient.fromEnv({ ARVADOS_API_TOKEN: 'secret-token-value' });
    } catch (err) {
      expect(String(err)).toContain('ARVADOS_API_HOST');
      expect(String(err)).not.toContain('secret-token-value');
    }
  });

  it('reports an unreadable settings file', () => {
    if (process.getuid?.() === 0) return; // root reads anything; nothing to check
    const home = homeWith('ARVADOS_API_HOST=x\n');
    chmodSync(join(home, '.config', 'arvados', 'settings.conf'), 0o000);
    expect(() => settingsFromEnv({ HOME: home })).toThrow(ArvadosConfigError);
  });

  it('rejects host values that are not host[:port]', () => {
    expect(() => new ArvadosClient({ apiHost: 'h.example/arvados', apiToken: 't' })).toThrow(/host\[:port\]/);
    expect(() => new ArvadosClient({ apiHost: '', apiToken: 't' })).toThrow(ArvadosConfigError);
    expect(() => new ArvadosClient({ apiHost: 'h', apiToken: '' })).toThrow(/apiToken is missing/);
    expect(new ArvadosClient({ apiHost: 'h.example:8443', apiToken: 't' }).baseUrl).toBe('https://h.example:8443');
    expect(new ArvadosClient({ apiHost: 'http://127.0.0.1:9', apiToken: 't' }).baseUrl).toBe('http://127.0.0.1:9');
  });
});
