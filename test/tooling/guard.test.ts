// The guards on what ships (`npm test` and `npm run test:system` run them), shown to fail: ESLint's
// import-x/no-extraneous-dependencies on src/ (a shipped import of a
// devDependency, type-only imports included, since declarations ship too),
// and scripts/check-package.mjs (publint and arethetypeswrong) on a package
// whose exports point at nothing.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { loadESLint } from 'eslint';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The rule ids ESLint reports for `code` as if it were the file `path` (relative to the repository). */
async function lint(path: string, code: string): Promise<string[]> {
  const LegacyESLint = await loadESLint({ useFlatConfig: false });
  const eslint = new LegacyESLint({ cwd: ROOT });
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, path) });
  return result!.messages.map((m) => `${m.ruleId}: ${m.message}`);
}

describe('the shipped-imports guard (ESLint, src/ only)', () => {
  it.each([
    ["import fc from 'fast-check';\nexport const x = fc;\n", 'fast-check'],
    ["export const x = () => import('fast-check');\n", 'fast-check'],
    ["export { describe } from '@jest/globals';\n", '@jest/globals'],
    ["import type { Config } from 'jest';\nexport type C = Config;\n", 'jest'],
  ])('fails a shipped file that imports a devDependency: %j', async (code, name) => {
    expect(await lint('src/cli/guard-probe.ts', code)).toEqual([`import-x/no-extraneous-dependencies: '${name}' should be listed in the project's dependencies, not devDependencies.`]);
  });

  it('passes runtime dependencies, builtins and relative imports, and devDependencies outside src/', async () => {
    const code = "import { parse } from 'yaml';\nimport { readFileSync } from 'node:fs';\nimport { UsageError } from './errors.js';\nexport const x = [parse, readFileSync, UsageError];\n";
    expect(await lint('src/cli/guard-probe.ts', code)).toEqual([]);
    expect(await lint('test/cli/guard-probe.ts', "import fc from 'fast-check';\nexport const x = fc;\n")).toEqual([]);
  });
});

describe('the published-shape check (publint + arethetypeswrong on the packed tarball)', () => {
  it('fails a package whose exports point at a file that does not ship', () => {
    const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-guard-'));
    try {
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'probe', version: '1.0.0', type: 'module', exports: { '.': { types: './index.d.ts', default: './missing.js' } } }));
      writeFileSync(join(dir, 'index.d.ts'), 'export declare const x: number;\n');
      const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'check-package.mjs'), dir], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('check-package: publint found problems in probe-1.0.0.tgz');
      expect(r.stderr).toContain('check-package: attw found problems in probe-1.0.0.tgz');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
