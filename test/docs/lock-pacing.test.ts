/**
 * The demo paces its locks as the CLI does (the local runner's capacity,
 * asked before each round of locks), as the docs promise: it never holds
 * more containers than its simulated node of 4 vCPUs can run, plus the one
 * that can never fit (locked to be cancelled), instead of locking every
 * queued container at once. Needs `npm run build` (npm test does it).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from '@jest/globals';
import { ROOT } from './snippets.js';

const run = promisify(execFile);

it('arvados-dispatch demo holds no more containers than fit its node', async () => {
  const { stdout } = await run(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'demo', '--json', '--containers', '12'], {
    env: { PATH: process.env.PATH ?? '' },
    timeout: 120_000,
  });
  const events = stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; uuid?: string });
  let held = 0;
  let most = 0;
  for (const e of events) {
    if (e.event === 'locked') held++;
    if (e.event === 'finished') held--;
    most = Math.max(most, held);
  }
  expect(events.filter((e) => e.event === 'locked')).toHaveLength(12);
  expect(held).toBe(0);
  // Every demo container asks for at least 1 vCPU of the node's 4; +1 for the one that never fits.
  expect(most).toBeLessThanOrEqual(5);
}, 150_000);
