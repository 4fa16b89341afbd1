/**
 * What the docs promise about `fake.client()`: it trusts the fake's own
 * certificate for requests and for the Dispatcher's event stream, and a
 * LocalRunner running the crunch-run simulator with it completes a
 * container at the first attempt (the simulator once failed on
 * "self-signed certificate" and the container cycled through lock and
 * unlock).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Dispatcher } from '../../src/dispatcher/dispatcher.js';
import { LocalRunner } from '../../src/runners/local/local-runner.js';
import { crunchRunSimPath } from '../../src/testing/crunch-run-sim.js';
import { FakeArvados } from '../../src/testing/fake-arvados.js';

let fake: FakeArvados | undefined;
let stateDir: string | undefined;
afterEach(async () => {
  await fake?.stop();
  fake = undefined;
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  stateDir = undefined;
});

function settledOnce(d: Dispatcher, uuid: string): Promise<void> {
  return new Promise((resolve) => d.on('settled', (u) => u === uuid && resolve()));
}

describe('fake.client() trust', () => {
  it('the event stream trusts the fake certificate: a change reaches the dispatcher without a poll', async () => {
    fake = await new FakeArvados().start();
    const c = fake.addContainer({ priority: 10 });
    // A poll interval longer than the test: after the first (immediate) poll,
    // only an event can tell the dispatcher that the container finished.
    const d = new Dispatcher({
      client: fake.client(),
      pollInterval: 600_000,
      handleSignals: false,
      async runContainer(d, container, updates) {
        await d.client.updateContainer(container.uuid, { state: 'Running' });
        await d.client.updateContainer(container.uuid, { state: 'Complete', exit_code: 0 });
        for await (const _ of updates);
      },
    });
    const settled = settledOnce(d, c.uuid);
    const running = d.run();
    await settled;
    expect(fake.websocketConnections).toBeGreaterThanOrEqual(1);
    await d.stop();
    await running;
  }, 30_000);

  it('a LocalRunner with the crunch-run simulator and fake.client() completes the container at the first lock', async () => {
    fake = await new FakeArvados().start();
    const c = fake.addContainer({ priority: 10, runtime_constraints: { vcpus: 1, ram: 2 ** 28 } });
    const runner = new LocalRunner({
      crunchRunCommand: process.execPath,
      crunchRunArgs: [crunchRunSimPath],
      capacity: { vcpus: 2, ram: 2 ** 32 },
      stateDir: (stateDir = mkdtempSync(join(tmpdir(), 'fake-trust-'))),
    });
    expect(fake.client().credentialsEnv().ARVADOS_API_HOST_INSECURE).toBe('1');
    const d = new Dispatcher({ client: fake.client(), runner, pollInterval: 200, handleSignals: false });
    const done = fake.waitForState(c.uuid, ['Complete', 'Cancelled'], { timeout: 30_000 });
    const settled = settledOnce(d, c.uuid);
    const running = d.run();
    const final = await done;
    await settled;
    await d.stop();
    await running;
    expect(final.state).toBe('Complete');
    expect(fake.container(c.uuid)?.lock_count).toBe(1);
    expect(fake.runCount(c.uuid)).toBe(1);
  }, 45_000);
});
