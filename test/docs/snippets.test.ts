/**
 * Every TypeScript/JavaScript block of the README and docs/*.md compiles
 * against the built package's types, as a user's file would (it imports
 * `arvados-dispatch` by name); blocks marked `<!-- run -->` also run.
 * Needs `npm run build` first (npm test builds).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import ts from 'typescript';
import { ROOT, docFiles, snippetName, snippetsOf, type Snippet } from './snippets.js';

const run = promisify(execFile);
const all: Snippet[] = docFiles().flatMap(snippetsOf);
const checked = all.filter((s) => s.mark !== 'fragment');
let dir: string;

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist', 'index.d.ts'))) throw new Error('run `npm run build` first: the snippets compile against dist/');
  // A project of its own that has the package installed (a symlink to this
  // repository), so `import ... from 'arvados-dispatch'` resolves as for a user.
  dir = mkdtempSync(join(tmpdir(), 'docs-snippets-'));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'arvados-dispatch'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  for (const s of checked) {
    // `export {}` keeps every block a module of its own (top-level await, no shared names).
    const ext = s.lang === 'ts' ? 'ts' : 'mjs';
    writeFileSync(join(dir, `${snippetName(s)}.${ext}`), `${s.code}\nexport {};\n`);
  }
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('docs snippets', () => {
  it('finds the blocks, and only a few are fragments', () => {
    expect(checked.length).toBeGreaterThanOrEqual(8);
    expect(all.filter((s) => s.mark === 'fragment').length).toBeLessThanOrEqual(3);
    expect(checked.some((s) => s.file === 'README.md')).toBe(true);
  });

  it('every TypeScript and JavaScript block compiles against the built types', () => {
    const files = checked.map((s) => join(dir, `${snippetName(s)}.${s.lang === 'ts' ? 'ts' : 'mjs'}`));
    const program = ts.createProgram(files, {
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2022.d.ts'],
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      allowJs: true,
      checkJs: false,
      types: ['node'],
      typeRoots: [join(ROOT, 'node_modules', '@types')],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      if (!d.file || d.start === undefined) return text;
      const s = checked.find((x) => d.file!.fileName.includes(snippetName(x)));
      const { line } = d.file.getLineAndCharacterOfPosition(d.start);
      return s ? `${s.file}:${s.line + 1 + line}: ${text}` : `${d.file.fileName}:${line + 1}: ${text}`;
    });
    expect(problems).toEqual([]);
  });

  const runnable = all.filter((s) => s.mark === 'run');
  it.each(runnable.map((s) => [`${s.file}:${s.line}`, s] as const))('%s runs', async (_where, s) => {
    const js = ts.transpileModule(s.code, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, verbatimModuleSyntax: false },
    }).outputText;
    const file = join(dir, `${snippetName(s)}.run.mjs`);
    writeFileSync(file, js);
    await expect(run(process.execPath, [file], { cwd: dir, timeout: 60_000 })).resolves.toBeDefined();
  });
});
