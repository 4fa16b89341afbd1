import { describe, expect, it } from '@jest/globals';
import { SubmitGate, type GateTicket } from '../../../src/runners/batch/gate.js';

/** Whether `p` has settled once pending callbacks have run. */
function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  return new Promise((r) => setImmediate(() => r(done)));
}

describe('SubmitGate', () => {
  it('lets everyone through while open', async () => {
    const gate = new SubmitGate(60_000);
    const a = await gate.enter();
    const b = await gate.enter();
    a.done('submitted');
    b.done('other');
    expect(gate.state).toBe('open');
  });

  it('pauses on a refusal, then lets one probe through when a job queued at the pause leaves', async () => {
    const gate = new SubmitGate(60_000);
    const events: string[] = [];
    gate.on('paused', () => events.push('paused'));
    gate.on('probing', (why) => events.push(`probing:${why}`));
    gate.on('resumed', () => events.push('resumed'));
    gate.observe(['j1']);
    (await gate.enter()).done('backpressure');
    expect(gate.state).toBe('paused');
    const w1 = gate.enter();
    const w2 = gate.enter();
    expect(await settled(w1)).toBe(false);
    // A job submitted just before the pause shows up later; it counts too.
    gate.observe(['j1', 'j2']);
    gate.observe(['j1']);
    expect(await settled(w1)).toBe(true);
    expect(await settled(w2)).toBe(false);
    const probe = await w1;
    probe.done('submitted');
    expect(gate.state).toBe('open');
    (await w2).done('submitted');
    expect(events).toEqual(['paused', 'probing:job-left', 'resumed']);
    gate.close();
  });

  it('pauses again when the probe is refused, and hands an uninformative probe to the next waiter', async () => {
    const gate = new SubmitGate(60_000);
    gate.observe(['j1', 'j2']);
    (await gate.enter()).done('backpressure');
    const w1 = gate.enter();
    const w2 = gate.enter();
    const w3 = gate.enter();
    gate.observe(['j2']);
    const p1 = await w1;
    p1.done('other'); // e.g. its job turned out to be queued already
    const p2 = await w2;
    expect(await settled(w3)).toBe(false);
    p2.done('backpressure');
    expect(gate.state).toBe('paused');
    expect(await settled(w3)).toBe(false);
    gate.observe([]);
    (await w3).done('submitted');
    expect(gate.state).toBe('open');
    gate.close();
  });

  it('probes after probeDelay when no job leaves', async () => {
    const gate = new SubmitGate(20);
    (await gate.enter()).done('backpressure');
    const probe = await gate.enter();
    expect(gate.state).toBe('probing');
    probe.done('submitted');
    expect(gate.state).toBe('open');
  });

  it('ignores the outcomes of submissions that were under way when it paused', async () => {
    const gate = new SubmitGate(60_000);
    const a = await gate.enter();
    const b = await gate.enter();
    const c = await gate.enter();
    a.done('backpressure');
    b.done('backpressure');
    c.done('submitted');
    expect(gate.state).toBe('paused');
    gate.close();
  });

  it('drops a waiter whose signal aborts', async () => {
    const gate = new SubmitGate(60_000);
    gate.observe(['j1']);
    (await gate.enter()).done('backpressure');
    const ac = new AbortController();
    const w = gate.enter(ac.signal);
    ac.abort(new Error('gave up'));
    await expect(w).rejects.toThrow('gave up');
    expect(gate.waiting).toBe(0);
    gate.observe([]);
    // The probe is kept for the next caller.
    const next: GateTicket = await gate.enter();
    next.done('submitted');
    expect(gate.state).toBe('open');
    await expect(gate.enter(AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
  });
});
