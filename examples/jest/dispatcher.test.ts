// Testing a dispatcher with Jest against FakeArvados, a real Arvados API
// server in the test process (HTTPS on 127.0.0.1). Nothing here waits for a
// fixed time: `waitForState` wakes on the fake's own state changes, and
// `dispatcher.idle()` on the dispatcher's poll cycle.
import { afterEach, beforeEach, expect, test } from '@jest/globals';
import { Dispatcher } from 'arvados-dispatch';
import { FakeArvados } from 'arvados-dispatch/testing';

// The dispatcher under test. Its runner marks the container Running, does the
// work (here: waits for `work()`), and stops early if the container's
// priority drops to 0, which is how a user cancels.
function dispatcherFor(fake: FakeArvados, work: () => Promise<void>): Dispatcher {
  return new Dispatcher({
    client: fake.client(),
    pollInterval: 20,
    handleSignals: false,
    async runContainer(d, container, updates) {
      await d.client.updateContainer(container.uuid, { state: 'Running' });
      const cancelled = (async () => {
        for await (const c of updates) if (c.priority === 0) return true;
        return false;
      })();
      if (await Promise.race([work().then(() => false), cancelled])) {
        await d.client.updateContainer(container.uuid, { state: 'Cancelled' });
      } else {
        await d.client.updateContainer(container.uuid, { state: 'Complete', exit_code: 0 });
      }
    },
  });
}

let fake: FakeArvados;
let dispatcher: Dispatcher | undefined;
beforeEach(async () => {
  fake = await new FakeArvados().start();
});
afterEach(async () => {
  await dispatcher?.stop();
  await fake.stop();
});

test('a queued container is run once and completes', async () => {
  const c = fake.addContainer({ priority: 1 });
  const done = fake.waitForState(c.uuid, ['Complete', 'Cancelled']); // wait first, then act
  dispatcher = dispatcherFor(fake, async () => {});
  void dispatcher.run();
  expect((await done).state).toBe('Complete');
  await dispatcher.idle(); // handed over, settled and released: nothing left in flight
  expect(fake.runCount(c.uuid)).toBe(1);
});

test('a running container whose priority drops to 0 is cancelled', async () => {
  const c = fake.addContainer({ priority: 1 });
  const running = fake.waitForState(c.uuid, 'Running');
  const stopped = fake.waitForState(c.uuid, ['Complete', 'Cancelled']);
  dispatcher = dispatcherFor(fake, () => new Promise<void>(() => {})); // work that never ends by itself
  void dispatcher.run();
  await running;
  fake.setPriority(c.uuid, 0);
  expect((await stopped).state).toBe('Cancelled');
  await dispatcher.idle();
});
