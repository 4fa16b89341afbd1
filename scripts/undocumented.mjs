// Lists what `npm run docs` fails on, one line each, by source file: exported
// names (and their methods and accessors) without TSDoc, and doc links to
// names the reference does not include. With --not-exported it also lists
// types that the public API uses but the package does not export (worth
// exporting, or keeping out of public signatures). Exit status 1 if anything
// is listed.
//
//   npm run docs:missing [-- --not-exported]
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const notExported = process.argv.includes('--not-exported');
const r = spawnSync(
  process.execPath,
  [
    join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc'),
    '--emit', 'none',
    '--treatWarningsAsErrors', 'false',
    '--logLevel', 'Warn',
    '--validation.notExported', String(notExported),
  ],
  { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } },
);
const lines = `${r.stdout}${r.stderr}`
  .split('\n')
  .map((l) => l.replace(/\x1b\[[0-9;]*m/g, '').trim()) // eslint-disable-line no-control-regex
  .filter((l) => /^\[(warning|error)\]/.test(l) && !/Found \d+ errors? and \d+ warnings?/.test(l));

const byFile = new Map();
for (const line of lines) {
  const text = line.replace(/^\[(warning|error)\]\s*/, '');
  const file = /defined in [^/]+\/(\S+?),/.exec(text)?.[1] ?? 'other';
  const what = text
    .replace(/, defined in \S+, does not have any documentation$/, ': no documentation')
    .replace(/, defined in \S+, is referenced by (\S+) but not included in the documentation$/, ': used by $1 but not exported');
  byFile.set(file, [...(byFile.get(file) ?? []), what]);
}
for (const [file, items] of [...byFile].sort(([a], [b]) => a.localeCompare(b))) {
  console.log(file);
  for (const item of items) console.log(`  ${item}`);
}
const count = lines.length;
console.log(count === 0 ? 'Nothing to fix: every exported name is documented.' : `${count} listed.`);
process.exitCode = count === 0 ? 0 : 1;
