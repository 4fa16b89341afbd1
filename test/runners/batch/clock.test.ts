/**
 * The batch core's timers run on the injected clock: with a manual clock,
 * queue polls, the submit gate's probe and the rate limiter's refill happen
 * exactly when the clock says, with no real time passing.
 */
import { describe, expect, it } from '@jest/globals';
import type { Clock } from '../../../src/util/sleep.js';
import { QueueMonitor } from '../../../src/runners/batch/monitor.js';
import { SubmitGate } from '../../../src/runners/batch/gate.js';
import { CommandLimiter } from '../../../src/runners/batch/limiter.js';

/** A clock that moves only when told: sleeps resolve as `advance` passes their time. */
class ManualClock implements Clock {
  #now = 1_000_000;
  #sleepers: Array<{ at: number; resolve: () => void }> = [];
  now(): number {
    return this.#now;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const s = { at: this.#now + ms, resolve };
      this.#sleepers.push(s);
      signal?.addEventListener('abort', () => {
        this.#sleepers = this.#sleepers.filter((x) => x !== s);
        reject(signal.reason);
      }, { once: true });
    });
  }
  /** Moves time on by `ms`, waking every sleeper due, and lets their callbacks run. */
  async advance(ms: number): Promise<void> {
    this.#now += ms;
    const due = this.#sleepers.filter((s) => s.at <= this.#now);
    this.#sleepers = this.#sleepers.filter((s) => s.at > this.#now);
    for (const s of due) s.resolve();
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }
  get pending(): number {
    return this.#sleepers.length;
  }
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

describe('the batch core on a manual clock', () => {
  it('QueueMonitor polls once per interval of the clock, and stamps snapshots with its time', async () => {
    const clock = new ManualClock();
    let queries = 0;
    const monitor = new QueueMonitor({
      intervalMs: 10_000,
      clock,
      query: () => {
        queries++;
        return Promise.resolve({ code: 0, signal: null, stdout: '', stderr: '' });
      },
      parse: () => [],
    });
    monitor.start();
    await flush();
    expect(queries).toBe(1);
    expect(monitor.latest?.startedAt).toBe(clock.now());
    await clock.advance(9_999);
    expect(queries).toBe(1);
    await clock.advance(1);
    expect(queries).toBe(2);
    await monitor.stop();
    expect(clock.pending).toBe(0);
  });

  it('SubmitGate probes after its delay on the clock', async () => {
    const clock = new ManualClock();
    const gate = new SubmitGate(60_000, clock);
    const t = await gate.enter();
    t.done('backpressure');
    expect(gate.state).toBe('paused');
    await clock.advance(59_999);
    expect(gate.state).toBe('paused');
    await clock.advance(1);
    expect(gate.state).toBe('probing');
    gate.close();
  });

  it('CommandLimiter refills its tokens on the clock', async () => {
    const clock = new ManualClock();
    const limiter = new CommandLimiter(10, { count: 2, periodMs: 1_000 }, clock);
    let started = 0;
    const run = (): Promise<void> => limiter.run(async () => void started++);
    void run();
    void run();
    void run();
    await flush();
    expect(started).toBe(2);
    await clock.advance(999);
    expect(started).toBe(2);
    await clock.advance(1);
    expect(started).toBe(3);
  });
});
