// The published shape of the package, checked on the tarball `npm pack`
// makes (node scripts/check-package.mjs [package dir]; `npm run test:system` runs it):
//
// - publint: package.json fields against the files that ship (exports,
//   main, types, bin, module format of each entry), warnings are errors;
// - @arethetypeswrong/cli: every entry point resolves, with types of the
//   right module kind, under node10, node16 (CJS and ESM) and bundlers.
//
// Both read the local tarball only; nothing is fetched. The tarball is
// packed with --ignore-scripts: `npm run test:system` builds dist/ before this runs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dir = resolve(process.argv[2] ?? ROOT);
const bin = (name) => join(ROOT, 'node_modules', '.bin', name);
const env = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

const work = mkdtempSync(join(tmpdir(), 'arvados-dispatch-check-'));
let failed = false;
try {
  const [info] = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: dir, encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'inherit'] }),
  );
  const tarball = join(work, info.filename);
  for (const [name, args] of [
    ['publint', ['run', '--strict', tarball]],
    ['attw', ['--no-color', '--format', 'ascii', tarball]],
  ]) {
    try {
      execFileSync(bin(name), args, { cwd: work, env, stdio: ['ignore', 'inherit', 'inherit'] });
    } catch {
      console.error(`check-package: ${name} found problems in ${info.filename}`);
      failed = true;
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
