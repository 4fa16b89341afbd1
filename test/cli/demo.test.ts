// `arvados-dispatch demo` as a process: small runs, plain lines (stdout is
// not a TTY here) and JSON. Needs `npm run build` first (`npm test` does it).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';

const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const built = existsSync(MAIN);
const describeBuilt = built ? describe : describe.skip;

function demo(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // No ARVADOS_* variables: the demo needs no credentials.
  const child = spawn(process.execPath, [MAIN, 'demo', ...args], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

describeBuilt('arvados-dispatch demo', () => {
  it('dispatches every container to a final state and prints a summary', async () => {
    const r = await demo(['--containers', '6']);
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/arvados-dispatch demo: 6 containers, simulated node with 4 vCPUs, 8 GiB RAM, 2 GPUs; API https:\/\/127\.0\.0\.1:\d+/);
    // The cancel path: the user of the long container cancels it while it runs.
    expect(out).toMatch(/(zzzzz-dz642-\w{15}): its user cancels the request \(priority -> 0\) while it runs/);
    const cancelled = /(zzzzz-dz642-\w{15}): its user cancels/.exec(out)![1];
    expect(out).toMatch(new RegExp(`${cancelled} sent SIGINT to crunch-run pid \\d+: priority is 0`));
    expect(out).toContain(`${cancelled} finished: Cancelled`);
    // The never-fits path, as a warning on stderr.
    expect(r.stderr).toMatch(/warning: container resource request cannot be fulfilled on this node: needs 16 vCPUs, capacity is 4; cancelling zzzzz-dz642-/);
    expect(out).toMatch(/started crunch-run, pid \d+ \(1 vCPU, 2.3 GiB RAM, GPU 0\)/);
    expect(out).toMatch(/all 6 containers are final; stopping/);
    expect(out).toMatch(/Summary: 6 containers in [\d.]+s \(finished \d\d:\d\d:\d\d\): 4 Complete, 2 Cancelled\n/);
    expect(out).toMatch(/^ {2}CONTAINER +PRIO +CPUS +RAM +STATE +EXIT +TIME +NOTE$/m);
    const rows = out.split('\n').filter((l) => /^ {2}zzzzz-dz642-/.test(l));
    expect(rows).toHaveLength(6);
    expect(rows[0]).toMatch(/ 1000 +1 +1 GiB +Cancelled +- +[\d.]+s +its user cancelled it while it ran$/);
    expect(rows[1]).toMatch(/ 900 +16 +1 GiB +Cancelled +- +- +never fits: needs 16 vCPUs, capacity is 4$/);
    expect(rows.slice(2).every((row) => / Complete +0 +[\d.]+s/.test(row))).toBe(true);
  });

  it('--json: JSON lines only, ending with a summary', async () => {
    const r = await demo(['--containers', '3', '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.at(-1)).toMatchObject({ event: 'summary', containers: 3, complete: 1, cancelled: 2, not_final: 0 });
    expect(events.filter((e) => e.event === 'container')).toHaveLength(3);
  });
});
