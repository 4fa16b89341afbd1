// Jest globalSetup of the system tier: packs the package once per run and
// installs the tarball into an empty project without devDependencies, as a
// user would (`npm install --omit=dev`). Tests find both through
// $ARVADOS_DISPATCH_PACKED (see packed.ts); global-teardown.mjs removes them.
//
// The install needs no network after `npm ci`: the project gets a lockfile
// with this repository's own locked versions of the runtime dependencies, so
// npm takes exactly what `npm ci` here put in npm's cache (--prefer-offline).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** npm's environment for the install: quiet, and none of the test runner's NODE_OPTIONS. */
export function cleanEnv() {
  const e = { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' };
  delete e.NODE_OPTIONS;
  return e;
}

const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });

/**
 * package.json and package-lock.json of a project that depends on `tarball`
 * (one folder up), locked to the versions this repository's lockfile has for
 * the runtime dependencies.
 */
function lockedProject(tarball) {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
  const spec = `file:../${tarball.split('/').pop()}`;
  const packages = {
    '': { name: 'app', version: '1.0.0', dependencies: { [pkg.name]: spec } },
    [`node_modules/${pkg.name}`]: {
      version: pkg.version,
      resolved: spec,
      integrity: `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`,
      license: pkg.license,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
      engines: pkg.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path.startsWith('node_modules/') && !entry.dev && !entry.devOptional && !entry.link) packages[path] = entry;
  }
  return {
    'package.json': JSON.stringify({ name: 'app', version: '1.0.0', private: true, dependencies: { [pkg.name]: spec } }),
    'package-lock.json': JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2),
  };
}

export default function globalSetup() {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is not built: run `npm run build` (npm run test:system does)');
  const work = mkdtempSync(join(tmpdir(), 'arvados-dispatch-pack-'));
  // --ignore-scripts: dist/ is already built (prepack would rebuild it).
  const [info] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], ROOT));
  const tarball = join(work, info.filename);
  const app = join(work, 'app');
  mkdirSync(app);
  for (const [name, text] of Object.entries(lockedProject(tarball))) writeFileSync(join(app, name), text);
  npm(['install', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], app);
  process.env.ARVADOS_DISPATCH_PACKED = JSON.stringify({ work, tarball, app, files: info.files.map((f) => f.path).sort() });
}
