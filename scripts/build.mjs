// Builds dist/ from src/: the ES module build (dist/) and the CommonJS build
// (dist/cjs/), each with .d.ts types and source maps that carry their sources
// (the package ships no src/, so a map must not need it).
//
// The CommonJS build exists for consumers that cannot load ES modules:
// Jest's default mode and TypeScript with `module: commonjs`. p-queue 9 is
// ESM-only (p-queue 10 needs Node 22), so dist/cjs must never `require('p-queue')`:
// it is bundled, with its two dependencies, into dist/cjs/vendor/p-queue.js, and
// the compiled requires are pointed at that file. Everything else stays an
// ordinary dependency.
//
//   node scripts/build.mjs [esm|cjs] [--no-check]
//
// builds both (the default), or one of them: `npm test` builds the ES module
// build first, as the integration tests run it, and the CommonJS build beside
// them, as no test before the system tier loads dist/cjs. `--no-check` emits
// the ES module build without type-checking it (tsc --noCheck; the output is
// the same): `npm test` runs the type check beside Jest, over the same
// sources and the tests, so checking them before Jest as well only delays it.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = join(ROOT, 'dist');
const CJS = join(DIST, 'cjs');
const VENDOR = join(CJS, 'vendor', 'p-queue.js');

const args = process.argv.slice(2);
const noCheck = args.includes('--no-check');
const part = args.find((a) => a !== '--no-check') ?? 'all';
if (!['all', 'esm', 'cjs'].includes(part) || args.length > (noCheck ? 2 : 1) || (noCheck && part === 'cjs')) {
  console.error('usage: node scripts/build.mjs [esm|cjs] [--no-check]  (--no-check: the ES module build only)');
  process.exit(2);
}
if (part !== 'cjs') buildEsm();
if (part !== 'esm') await buildCommonJs();

/** The ES module build: dist/ but dist/cjs. */
function buildEsm() {
  // A stale file from a removed module would otherwise be packed.
  rmSync(DIST, { recursive: true, force: true });
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const esm = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), ...(noCheck ? ['--noCheck'] : [])], { stdio: 'inherit' });
  if (esm.status !== 0) process.exit(esm.status ?? 1);
  // The CLI entry point must be executable (npm also does this when it links a
  // `bin`, but `npm run build` in a clone should give a runnable file as well).
  chmodSync(join(DIST, 'cli', 'main.js'), 0o755);
}

/** The CommonJS build: dist/cjs. */
async function buildCommonJs() {
  rmSync(CJS, { recursive: true, force: true });
  compileCommonJs(join(ROOT, 'tsconfig.cjs.json'));

  // .js files under dist/cjs are CommonJS whatever the root package.json says.
  writeFileSync(join(CJS, 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);

  // p-queue, eventemitter3 and p-timeout are MIT: their notices travel with the code.
  // (p-timeout and eventemitter3 are resolved from p-queue, as esbuild does.)
  const packageDir = (name, from) => {
    let dir = dirname(createRequire(from).resolve(name));
    while (!existsSync(join(dir, 'package.json')) || JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name !== name) dir = dirname(dir);
    return dir;
  };
  const pQueue = packageDir('p-queue', join(ROOT, 'package.json'));
  const notices = ['p-queue', 'p-timeout', 'eventemitter3'].map((name) => {
    const dir = name === 'p-queue' ? pQueue : packageDir(name, join(pQueue, 'package.json'));
    const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
    const text = readFileSync(join(dir, file), 'utf8').trim();
    return `${name}@${version}\n\n${text}`;
  });
  await build({
    entryPoints: [fileURLToPath(import.meta.resolve('p-queue'))],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    outfile: VENDOR,
    legalComments: 'none',
    banner: { js: `/*\n * Bundled for the CommonJS build of arvados-dispatch.\n *\n${notices.join('\n\n').replace(/^/gm, ' * ').replace(/ +$/gm, '')}\n */` },
    logLevel: 'warning',
  });

  const walk = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));

  // Point the compiled requires at the bundle.
  for (const file of walk(CJS).filter((f) => f.endsWith('.js') && f !== VENDOR)) {
    const code = readFileSync(file, 'utf8');
    if (!code.includes('require("p-queue")')) continue;
    let target = relative(dirname(file), VENDOR).split('\\').join('/');
    if (!target.startsWith('.')) target = `./${target}`;
    writeFileSync(file, code.replaceAll('require("p-queue")', `require(${JSON.stringify(target)})`));
  }

  // The CommonJS types still name p-queue's own (ES module) types, which a
  // CommonJS file may only reach with `resolution-mode: import` (TypeScript 5.3+);
  // without it, TypeScript reports TS1479 / TS1542 in projects that check
  // library types.
  const attribute = "{ 'resolution-mode': 'import' }";
  for (const file of walk(CJS).filter((f) => f.endsWith('.d.ts'))) {
    const types = readFileSync(file, 'utf8');
    if (!types.includes('p-queue')) continue;
    const fixed = types
      .replace(/^import (?:type )?([^{},]+|\{[^}]*\}) from 'p-queue';$/gm, `import type $1 from 'p-queue' with ${attribute};`)
      .replaceAll('import("p-queue")', `import("p-queue", { with: ${attribute} })`);
    const left = fixed.split('\n').filter((line) => line.includes('p-queue') && !line.includes('resolution-mode'));
    if (left.length > 0) throw new Error(`${relative(ROOT, file)}: cannot rewrite this p-queue import for CommonJS: ${left[0].trim()}`);
    writeFileSync(file, fixed);
  }
}

/**
 * The CommonJS build, through the compiler API for one reason: `import.meta.url`
 * (a module finding its own file) has no CommonJS spelling TypeScript accepts,
 * so TS1343 is let through and the emitted code gets the CommonJS equivalent,
 * as bundlers' CommonJS shims do. Any other diagnostic fails the build.
 */
function compileCommonJs(configPath) {
  const config = ts.getParsedCommandLineOfConfigFile(configPath, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => fail([d]) });
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
  const write = (file, text, bom) => {
    if (file.endsWith('.js')) {
      text = text.replaceAll('import.meta.url', 'require("node:url").pathToFileURL(__filename).href');
      if (text.includes('import.meta')) fail([], `${relative(ROOT, file)}: import.meta other than import.meta.url has no CommonJS equivalent here`);
    }
    ts.sys.writeFile(file, text, bom);
  };
  const emitted = program.emit(undefined, write);
  fail([...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics].filter((d) => d.code !== 1343));
}

function fail(diagnostics, message) {
  if (diagnostics.length === 0 && !message) return;
  const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' };
  if (diagnostics.length > 0) process.stderr.write(ts.formatDiagnostics(diagnostics, host));
  if (message) process.stderr.write(`${message}\n`);
  process.exit(1);
}
