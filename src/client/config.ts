/**
 * Client configuration the way Arvados users know it: `ARVADOS_API_HOST`,
 * `ARVADOS_API_TOKEN`, `ARVADOS_API_HOST_INSECURE`, with
 * `$HOME/.config/arvados/settings.conf` as a fallback (the environment wins),
 * as the Go and Python SDKs read them.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArvadosConfigError } from './errors.js';

/** Resolved connection settings. */
export interface ArvadosSettings {
  apiHost: string;
  apiToken: string;
  insecure: boolean;
}

/** `1`, `yes`, `true` (any case) mean "skip TLS verification", as in the Go SDK. */
export function parseInsecure(value: string | undefined): boolean {
  return value !== undefined && /^(1|yes|true)$/i.test(value.trim());
}

/**
 * Parses settings.conf: `KEY=VALUE` lines, whitespace trimmed around both; lines
 * without `=` and keys not starting with `ARVADOS_` (comments) are skipped.
 */
export function parseSettingsFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    if (!key.startsWith('ARVADOS_')) continue;
    out[key] = line.slice(eq + 1).trim();
  }
  return out;
}

function readSettingsFile(env: NodeJS.ProcessEnv): Record<string, string> {
  if (!env.HOME) return {};
  const path = join(env.HOME, '.config', 'arvados', 'settings.conf');
  try {
    return parseSettingsFile(readFileSync(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    // The Go SDK logs and ignores an unreadable file; a config error is clearer.
    throw new ArvadosConfigError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * Reads the settings from `env`, falling back to settings.conf under
 * `env.HOME`. Throws {@link ArvadosConfigError} naming whatever is missing.
 */
export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): ArvadosSettings {
  const file = readSettingsFile(env);
  const get = (k: string): string | undefined => {
    const v = env[k] ?? file[k];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const apiHost = get('ARVADOS_API_HOST');
  const apiToken = get('ARVADOS_API_TOKEN');
  const missing = [!apiHost && 'ARVADOS_API_HOST', !apiToken && 'ARVADOS_API_TOKEN'].filter(Boolean);
  if (missing.length) {
    throw new ArvadosConfigError(
      `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not set ` +
        '(in the environment or $HOME/.config/arvados/settings.conf)',
    );
  }
  return { apiHost: apiHost!, apiToken: apiToken!, insecure: parseInsecure(get('ARVADOS_API_HOST_INSECURE')) };
}
