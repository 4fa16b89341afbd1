/**
 * The package version, as `--version` prints it and `/metrics` exports it.
 *
 * @module
 */
import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** The version in the package.json next to dist/, read once at run time. */
export function packageVersion(): string {
  if (cached === undefined) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    cached = pkg.version ?? 'unknown';
  }
  return cached;
}
