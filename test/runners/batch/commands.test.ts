import { describe, expect, it } from '@jest/globals';
import { CommandTimeoutError, spawnCommand } from '../../../src/runners/batch/commands.js';
import { CommandLimiter, parseRate } from '../../../src/runners/batch/limiter.js';
import { TestClock } from '../../../src/testing/clock.js';
import { parseDuration } from '../../../src/cli/duration.js';

const node = process.execPath;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('spawnCommand', () => {
  it('collects stdout, stderr and the exit code, without a shell', async () => {
    const result = await spawnCommand(node, [
      '-e',
      'process.stdout.write(process.argv[1]); process.stderr.write("err"); process.exit(3)',
      '$HOME; `id`',
    ]);
    expect(result).toEqual({ code: 3, signal: null, stdout: '$HOME; `id`', stderr: 'err' });
  });

  it('writes input to stdin, and gives /dev/null otherwise', async () => {
    const echo = ['-e', 'process.stdin.pipe(process.stdout)'];
    expect((await spawnCommand(node, echo, { input: 'héllo\n' })).stdout).toBe('héllo\n');
    expect((await spawnCommand(node, echo)).stdout).toBe('');
  });

  it('uses the given environment as the whole environment', async () => {
    const result = await spawnCommand(node, ['-e', 'process.stdout.write(JSON.stringify(process.env))'], {
      env: { ONLY: 'this' },
    });
    expect(JSON.parse(result.stdout)).toEqual({ ONLY: 'this' });
  });

  it('reports a kill by a signal', async () => {
    const result = await spawnCommand(node, ['-e', 'process.kill(process.pid, "SIGTERM")']);
    expect(result.code).toBeNull();
    expect(result.signal).toBe('SIGTERM');
  });

  it('rejects when the command does not exist', async () => {
    await expect(spawnCommand('/nonexistent/sbatch', [])).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('kills the child on timeout and rejects only once it has exited', async () => {
    // Long enough for node to start and print on a loaded machine.
    const started = spawnCommand(node, ['-e', 'console.log(process.pid); setInterval(() => {}, 1000)'], {
      timeoutMs: 3_000,
    });
    const err = await started.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandTimeoutError);
    const pid = Number((err as CommandTimeoutError).partial.stdout.trim());
    expect(pid).toBeGreaterThan(0);
    expect(alive(pid)).toBe(false);
  });

  it('kills the child on abort and rejects with the reason', async () => {
    const ac = new AbortController();
    const p = spawnCommand(node, ['-e', 'setInterval(() => {}, 1000)'], { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop it')), 100);
    await expect(p).rejects.toThrow('stop it');
  });

  it('rejects at once when already aborted', async () => {
    await expect(spawnCommand(node, ['-e', ''], { signal: AbortSignal.abort(new Error('early')) })).rejects.toThrow(
      'early',
    );
  });
});

describe('CommandLimiter', () => {
  it('starts a background task only when no other task waits', async () => {
    const limiter = new CommandLimiter(1, { count: 1000, periodMs: 1000 });
    const order: string[] = [];
    let release: () => void = () => undefined;
    const started = new Promise<void>((ready) => {
      void limiter.run(() => new Promise<void>((r) => ((release = r), ready())));
    });
    await started;
    const background = limiter.run(async () => void order.push('accounting'), undefined, true);
    const submits = ['submit 1', 'submit 2'].map((name) => limiter.run(async () => void order.push(name)));
    expect(limiter.waiting).toBe(3);
    release();
    await Promise.all([background, ...submits]);
    expect(order).toEqual(['submit 1', 'submit 2', 'accounting']);
  });

  it('runs at most `concurrency` tasks at once', async () => {
    const limiter = new CommandLimiter(3, { count: 1000, periodMs: 1000 });
    let now = 0;
    let peak = 0;
    const task = async (): Promise<void> => {
      now++;
      peak = Math.max(peak, now);
      await new Promise((r) => setTimeout(r, 20));
      now--;
    };
    await Promise.all(Array.from({ length: 10 }, () => limiter.run(task)));
    expect(peak).toBe(3);
    expect(limiter.started).toBe(10);
  });

  it('starts no more than `count` tasks per period (token bucket)', async () => {
    // On a test clock: the start times are exact, not bounded.
    const clock = new TestClock(0);
    const limiter = new CommandLimiter(100, { count: 5, periodMs: 200 }, clock);
    const starts: number[] = [];
    const all = Promise.all(Array.from({ length: 15 }, () => limiter.run(async () => void starts.push(clock.now()))));
    while (starts.length < 15) if (!(await clock.next())) await clock.settle();
    await all;
    // The burst (`count`) at once, then `count` more each period.
    expect(starts).toEqual([0, 200, 400].flatMap((t) => Array<number>(5).fill(t)));
    expect(limiter.started).toBe(15);
  });

  it('drops a waiting task when aborted, without running it', async () => {
    const limiter = new CommandLimiter(1, { count: 100, periodMs: 1000 });
    let release: () => void = () => undefined;
    const blocker = limiter.run(() => new Promise<void>((r) => (release = r)));
    const ac = new AbortController();
    let ran = false;
    const waiting = limiter.run(async () => void (ran = true), ac.signal);
    expect(limiter.waiting).toBe(1);
    ac.abort(new Error('cancel'));
    await expect(waiting).rejects.toThrow('cancel');
    release();
    await blocker;
    expect(ran).toBe(false);
    expect(limiter.waiting).toBe(0);
  });
});

describe('parseRate', () => {
  it('reads N/PERIOD and refuses anything else', () => {
    expect(parseRate('20/1s', parseDuration)).toEqual({ count: 20, periodMs: 1000 });
    expect(parseRate('100/1m', parseDuration)).toEqual({ count: 100, periodMs: 60_000 });
    expect(() => parseRate('20', parseDuration)).toThrow(RangeError);
    expect(() => parseRate('0/1s', parseDuration)).toThrow(RangeError);
    expect(() => parseRate('5/0s', parseDuration)).toThrow(RangeError);
  });
});
