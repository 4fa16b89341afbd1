// The published package as a user gets it: `npm pack`, install the tarball
// into an empty folder, then plain .mjs files import the library and the
// testing entry point, and the `arvados-dispatch` bin runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const npm = (args: string[], cwd: string): string =>
  execFileSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] });

describe('npm pack + install in an empty folder', () => {
  let work: string;
  let app: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'arvados-dispatch-pack-'));
    // --ignore-scripts: dist/ is already built by `npm test` (and `npm pack` would rebuild it).
    npm(['pack', '--ignore-scripts', '--pack-destination', work], ROOT);
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'))!;
    app = join(work, 'app');
    execFileSync('mkdir', [app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    // The dependencies come from npm's cache when it has them (npm ci filled it).
    npm(['install', '--prefer-offline', '--no-package-lock', join(work, tarball)], app);
  }, 240_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('ships only the build, the README and package.json', () => {
    const listed = execFileSync('tar', ['-tzf', join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!)], { encoding: 'utf8' });
    const files = listed.trim().split('\n');
    expect(files).toContain('package/dist/index.js');
    expect(files).toContain('package/dist/index.d.ts');
    expect(files).toContain('package/dist/testing/index.js');
    expect(files).toContain('package/dist/cli/main.js');
    expect(files).toContain('package/README.md');
    expect(files.filter((f) => /^package\/(src|test|bench|node_modules)\//.test(f))).toEqual([]);
  });

  it('lets a plain .mjs file import the library and the fake server, and use them', () => {
    writeFileSync(
      join(app, 'use.mjs'),
      `import { ArvadosClient, Dispatcher, ContainerState } from 'arvados-dispatch';
import { FakeArvados } from 'arvados-dispatch/testing';
const fake = await new FakeArvados().start();
const c = fake.addContainer({ priority: 2 });
const d = new Dispatcher({
  client: fake.client(),
  pollInterval: 20,
  handleSignals: false,
  async runContainer(disp, ct, updates) {
    await disp.client.updateContainer(ct.uuid, { state: ContainerState.Running });
    await disp.client.updateContainer(ct.uuid, { state: ContainerState.Complete, exit_code: 0 });
    for await (const _ of updates);
  },
});
const done = d.run();
while (fake.container(c.uuid).state !== 'Complete') await new Promise((r) => setTimeout(r, 10));
await d.stop();
await done;
await fake.stop();
console.log(typeof ArvadosClient.fromEnv, fake.container(c.uuid).state);
`,
    );
    const r = spawnSync(process.execPath, ['use.mjs'], { cwd: app, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('function Complete');
    expect(r.status).toBe(0);
  });

  it('installs the arvados-dispatch bin', () => {
    const r = spawnSync(join(app, 'node_modules', '.bin', 'arvados-dispatch'), ['--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^arvados-dispatch \d+\.\d+\.\d+$/);
  });

  it('type-checks for TypeScript users', () => {
    writeFileSync(
      join(app, 'types.ts'),
      `import { Dispatcher, type Container, type RunContainer } from 'arvados-dispatch';
import { FakeArvados } from 'arvados-dispatch/testing';
const run: RunContainer = async (_d, c: Container, updates) => { for await (const u of updates) void u.priority; void c.uuid; };
export const make = (fake: FakeArvados): Dispatcher => new Dispatcher({ client: fake.client(), runContainer: run });
`,
    );
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types'), 'types.ts'], {
      cwd: app,
      encoding: 'utf8',
    });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
