/**
 * docs/reference/ is generated (scripts/gen-docs.mjs, `npm run docs:gen`)
 * from the built CLI's help and the config tables: this regenerates it in
 * memory and fails when a committed page differs. Needs `npm run build`.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { ROOT } from './snippets.js';

const run = promisify(execFile);
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
let pages: Record<string, string>;

beforeAll(async () => {
  const script = `const m = await import(${JSON.stringify(join(ROOT, 'scripts', 'gen-docs.mjs'))}); process.stdout.write(JSON.stringify(await m.generate()));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, timeout: 60_000, maxBuffer: 16 << 20 });
  pages = JSON.parse(stdout) as Record<string, string>;
});

describe('generated references', () => {
  it.each(['docs/reference/cli.md', 'docs/reference/config.md'])('%s is up to date (npm run build && npm run docs:gen)', (page) => {
    expect(Object.keys(pages)).toContain(page);
    expect(readFileSync(join(ROOT, page), 'utf8')).toBe(pages[page]);
  });

  it("the CLI page has every command of the program's own --help", async () => {
    const { stdout } = await run(process.execPath, [MAIN, '--help'], { timeout: 30_000 });
    const commands = [...stdout.split('Commands:')[1].split('\n\n')[0].matchAll(/^ {2}([a-z][a-z0-9-]*)\s/gm)].map((m) => m[1]);
    expect(commands).toEqual(expect.arrayContaining(['local', 'slurm', 'demo', 'fake-server']));
    for (const c of commands) expect(pages['docs/reference/cli.md']).toContain(`\n## ${c}\n`);
  });

  it('the config page lists every key the program reads', async () => {
    const script = `const m = await import(${JSON.stringify(join(ROOT, 'dist', 'cli', 'config.js'))}); process.stdout.write(JSON.stringify(m.CONFIG_KEYS.map((k) => k.key)));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, timeout: 30_000 });
    const keys = JSON.parse(stdout) as string[];
    expect(keys.length).toBeGreaterThan(10);
    for (const k of keys) expect(pages['docs/reference/config.md']).toContain(`| \`${k}\` |`);
  });
});
