// Pid files of the local runner: a record counts only for the same process
// (pid and start time) running for the same container; stale ones go.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from '@jest/globals';
import { PidFiles, defaultStateDir, isAlive, processStartTime } from '../../../src/runners/local/pid-files.js';

const UUID = 'zzzzz-dz642-012345678901234';
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

it('follows only the recorded process, for its container, and deletes stale records', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pid-files-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', UUID], { stdio: 'ignore' });
  cleanups.push(() => child.kill('SIGKILL'));
  await new Promise((r) => child.once('spawn', r));
  const pid = child.pid as number;
  const files = new PidFiles(join(dir, 'state'));
  await files.write(UUID, pid);
  expect(statSync(join(dir, 'state')).mode & 0o777).toBe(0o700);
  expect(statSync(join(dir, 'state', `${UUID}.pid`)).mode & 0o777).toBe(0o600);
  expect(await files.live(UUID)).toEqual({ pid, startTime: await processStartTime(pid) });
  // Another container's uuid, or another start time (a reused pid): not ours.
  expect(await isAlive({ pid, startTime: String(await processStartTime(pid)) }, 'zzzzz-dz642-000000000000000')).toBe(false);
  writeFileSync(join(dir, 'state', `${UUID}.pid`), JSON.stringify({ pid, startTime: '1' }));
  expect(await files.live(UUID)).toBeUndefined();
  // ...and the stale file is gone.
  expect(await files.live(UUID)).toBeUndefined();
  await files.write(UUID, pid);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  expect(await files.live(UUID)).toBeUndefined();
  writeFileSync(join(dir, 'state', `${UUID}.pid`), 'not json');
  expect(await files.live(UUID)).toBeUndefined();
});

it('defaults to XDG_RUNTIME_DIR, else the cache directory', () => {
  expect(defaultStateDir({ XDG_RUNTIME_DIR: '/run/user/1' })).toBe('/run/user/1/arvados-dispatch/local');
  expect(defaultStateDir({})).toMatch(/\/\.cache\/arvados-dispatch\/local$/);
  expect(() => new PidFiles('rel')).toThrow(/absolute/);
});

it('deletes the files of dead crunch-runs at first use, and keeps a live one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pid-files-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const other = 'zzzzz-dz642-000000000000009';
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', UUID], { stdio: 'ignore' });
  cleanups.push(() => child.kill('SIGKILL'));
  await new Promise((r) => child.once('spawn', r));
  const first = new PidFiles(dir);
  await first.write(UUID, child.pid as number);
  writeFileSync(join(dir, `${UUID}.stdout`), 'live');
  writeFileSync(join(dir, `${other}.pid`), JSON.stringify({ pid: child.pid, startTime: '1' }));
  writeFileSync(join(dir, `${other}.stderr`), 'dead');
  writeFileSync(join(dir, 'zzzzz-dz642-000000000000008.stdout'), 'no pid file');
  await new PidFiles(dir).ready();
  expect(readdirSync(dir).sort()).toEqual([`${UUID}.pid`, `${UUID}.stdout`]);
});
