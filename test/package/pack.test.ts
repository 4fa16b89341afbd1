// The published package as a user gets it: `npm pack`, then the tarball is
// installed into a throwaway project and used from every kind of consumer we
// support: an ES module, a CommonJS `require`, Jest in its default (CommonJS)
// mode, and TypeScript with `module: commonjs`, `node16` (CommonJS package)
// and `node16` (ES module package). Each one runs a dispatcher against
// FakeArvados, so the check covers loading, not only resolving.
//
// The tarball is packed and installed (`--omit=dev`) once per run by the
// system tier's globalSetup (global-setup.mjs); see packed.ts.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { cleanEnv as env, installedBin, packed } from './packed.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const JEST = join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js');

const node = (args: string[], cwd: string): SpawnSyncReturns<string> => spawnSync(process.execPath, args, { cwd, encoding: 'utf8', env: env(), timeout: 120_000 });
const output = (r: SpawnSyncReturns<string>): string => `${r.stdout}${r.stderr}`;

/** Writes `files` (path -> content) under `dir`. */
function project(dir: string, files: Record<string, string>): string {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

/** Every file under `dir`, relative to it. */
const walk = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)).map((f) => `${e.name}/${f}`) : [e.name]));

// The body every consumer runs: one container, dispatched and completed. The
// runner completes the container itself, then the script waits for the
// dispatcher to have seen it finish before stopping it.
const body = (indent: string): string =>
  `const fake = await new FakeArvados().start();
const c = fake.addContainer({ priority: 2 });
let finished = false;
const d = new Dispatcher({
  client: fake.client(),
  pollInterval: 20,
  handleSignals: false,
  async runContainer(disp, ct, updates) {
    await disp.client.updateContainer(ct.uuid, { state: ContainerState.Running });
    await disp.client.updateContainer(ct.uuid, { state: ContainerState.Complete, exit_code: 0 });
    for await (const _ of updates);
    finished = true;
  },
});
const done = d.run();
while (!finished) await new Promise((r) => setTimeout(r, 10));
await d.stop();
await done;
await fake.stop();
console.log(typeof ArvadosClient.fromEnv, fake.container(c.uuid).state);`
    .split('\n')
    .map((l) => indent + l)
    .join('\n');

const ESM_IMPORTS = `import { ArvadosClient, Dispatcher, ContainerState } from 'arvados-dispatch';
import { FakeArvados } from 'arvados-dispatch/testing';
`;
const CJS_REQUIRES = `const { ArvadosClient, Dispatcher, ContainerState } = require('arvados-dispatch');
const { FakeArvados } = require('arvados-dispatch/testing');
`;
// TypeScript, with types on the runner's parameters so the declarations are used.
const TS_SOURCE = `import { ArvadosClient, Dispatcher, ContainerState, type Container, type ContainerUpdates } from 'arvados-dispatch';
import { FakeArvados } from 'arvados-dispatch/testing';

async function main(): Promise<void> {
  const fake = await new FakeArvados().start();
  const c: Container = fake.addContainer({ priority: 2 });
  let finished = false;
  const d = new Dispatcher({
    client: fake.client(),
    pollInterval: 20,
    handleSignals: false,
    async runContainer(disp: Dispatcher, ct: Readonly<Container>, updates: ContainerUpdates): Promise<void> {
      await disp.client.updateContainer(ct.uuid, { state: ContainerState.Running });
      await disp.client.updateContainer(ct.uuid, { state: ContainerState.Complete, exit_code: 0 });
      for await (const u of updates) void u.priority;
      finished = true;
    },
  });
  const done = d.run();
  while (!finished) await new Promise<void>((r) => setTimeout(r, 10));
  await d.stop();
  await done;
  await fake.stop();
  console.log(typeof ArvadosClient.fromEnv, fake.container(c.uuid)?.state);
}
void main();
`;

describe('npm pack + install --omit=dev into a throwaway project', () => {
  let app: string;
  let packedFiles: string[];
  beforeAll(() => {
    ({ app, files: packedFiles } = packed());
  });

  it('ships exactly both builds of src/, the README, the LICENSE and package.json', () => {
    const sources = walk(join(ROOT, 'src')).filter((f) => f.endsWith('.ts'));
    // The CommonJS build holds what the two entry points reach.
    const listed = execFileSync(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.cjs.json'), '--listFilesOnly'], { encoding: 'utf8' });
    const cjsSources = listed
      .split('\n')
      .map((f) => relative(join(ROOT, 'src'), f.trim()))
      .filter((f) => f.endsWith('.ts') && !f.startsWith('..') && !f.endsWith('.d.ts'));
    expect(cjsSources).toContain('index.ts');
    const built = (dir: string, files: string[]): string[] =>
      files.flatMap((f) => {
        const base = `${dir}${f.slice(0, -'.ts'.length)}`;
        return [`${base}.js`, `${base}.js.map`, `${base}.d.ts`];
      });
    const expected = [
      'LICENSE',
      'README.md',
      'package.json',
      'dist/cjs/package.json',
      'dist/cjs/vendor/p-queue.js',
      ...built('dist/', sources),
      ...built('dist/cjs/', cjsSources),
    ].sort();
    expect(packedFiles).toEqual(expected);
  });

  it('ships source maps that carry their sources, each named by its script', () => {
    const dir = join(app, 'node_modules', 'arvados-dispatch');
    const maps = packedFiles.filter((f) => f.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    const broken = maps.filter((m) => {
      const map = JSON.parse(readFileSync(join(dir, m), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
      const script = readFileSync(join(dir, m.slice(0, -'.map'.length)), 'utf8');
      const named = script.trimEnd().endsWith(`//# sourceMappingURL=${m.split('/').pop()}`);
      const carried = map.sources.length > 0 && map.sources.every((_, i) => typeof map.sourcesContent?.[i] === 'string');
      return !(named && carried);
    });
    expect(broken).toEqual([]);
    // And no script names a map that is not there.
    const dangling = packedFiles
      .filter((f) => f.endsWith('.js'))
      .flatMap((f) => {
        const m = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(dir, f), 'utf8'));
        const target = m ? `${f.slice(0, f.lastIndexOf('/') + 1)}${m[1]}` : undefined;
        return target && !packedFiles.includes(target) ? [f] : [];
      });
    expect(dangling).toEqual([]);
  });

  it('runs no script when installed, and never requires p-queue (ES module only) from the CommonJS build', () => {
    const pkg = JSON.parse(readFileSync(join(app, 'node_modules', 'arvados-dispatch', 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
    expect(Object.keys(pkg.scripts ?? {}).filter((s) => /^(pre|post)?install$|^prepare$/.test(s))).toEqual([]);
    const cjs = packedFiles.filter((f) => f.startsWith('dist/cjs/') && f.endsWith('.js'));
    const requiring = cjs.filter((f) => readFileSync(join(app, 'node_modules', 'arvados-dispatch', f), 'utf8').includes('require("p-queue")'));
    expect(requiring).toEqual([]);
  });

  it('works from an ES module (.mjs)', () => {
    const dir = project(join(app, 'esm'), { 'use.mjs': `${ESM_IMPORTS}${body('')}\n` });
    const r = node(['use.mjs'], dir);
    expect(output(r)).toBe('function Complete\n');
    expect(r.status).toBe(0);
  });

  it('works from CommonJS require(), without Node loading an ES module', () => {
    const dir = project(join(app, 'cjs'), { 'use.cjs': `${CJS_REQUIRES}(async () => {\n${body('  ')}\n})();\n` });
    // --trace-warnings is not needed: an ExperimentalWarning (require of an ES module) would land on stderr.
    const r = node(['use.cjs'], dir);
    expect(output(r)).toBe('function Complete\n');
    expect(r.status).toBe(0);
  });

  it("works in Jest's default (CommonJS) mode", () => {
    const dir = project(join(app, 'jest-cjs'), {
      'package.json': JSON.stringify({ name: 'jest-cjs', private: true, jest: { testEnvironment: 'node' } }),
      'dispatch.test.js': `${CJS_REQUIRES}
test('a container is dispatched and completes', async () => {
${body('  ').replace('console.log(typeof ArvadosClient.fromEnv, fake.container(c.uuid).state);', 'expect(typeof ArvadosClient.fromEnv).toBe("function");\n  expect(fake.container(c.uuid).state).toBe("Complete");')}
});
`,
    });
    const r = node([JEST, '--ci', '--colors=false'], dir);
    expect(r.stderr).toMatch(/Tests:\s+1 passed, 1 total/);
    expect(r.status).toBe(0);
  });

  // Strict, and without esModuleInterop or skipLibCheck: the package's own
  // declarations must type-check in the strictest common setting.
  const typescript = (name: string, type: 'module' | 'commonjs', module: string): void => {
    const dir = project(join(app, name), {
      'package.json': JSON.stringify({ name, private: true, type }),
      'tsconfig.json': JSON.stringify({
        compilerOptions: { strict: true, module, target: 'es2022', outDir: 'out', types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')], skipLibCheck: false },
        files: ['use.ts'],
      }),
      'use.ts': TS_SOURCE,
    });
    const tsc = node([TSC, '-p', '.'], dir);
    expect(output(tsc)).toBe('');
    expect(tsc.status).toBe(0);
    const compiled = readFileSync(join(dir, 'out', 'use.js'), 'utf8');
    expect(compiled.includes('require("arvados-dispatch")')).toBe(type === 'commonjs');
    const r = node(['out/use.js'], dir);
    expect(output(r)).toBe('function Complete\n');
    expect(r.status).toBe(0);
  };
  it('works from TypeScript with module: commonjs', () => typescript('ts-commonjs', 'commonjs', 'commonjs'));
  it('works from TypeScript with module: node16 in a CommonJS package', () => typescript('ts-node16-cjs', 'commonjs', 'node16'));
  it('works from TypeScript with module: node16 in an ES module package', () => typescript('ts-node16-esm', 'module', 'node16'));

  it('installs the arvados-dispatch bin', () => {
    const r = spawnSync(installedBin(packed()), ['--version'], { encoding: 'utf8', env: env() });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^arvados-dispatch \d+\.\d+\.\d+$/);
  });
});
