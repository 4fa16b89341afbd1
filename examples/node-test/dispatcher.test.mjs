// Testing a dispatcher with Node's own test runner (`node --test`) against
// FakeArvados. Plain JavaScript; the same works from CommonJS with require().
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Dispatcher } from 'arvados-dispatch';
import { FakeArvados } from 'arvados-dispatch/testing';

let fake;
let dispatcher;
let ran = 0;
before(async () => {
  fake = await new FakeArvados().start();
  dispatcher = new Dispatcher({
    client: fake.client(),
    pollInterval: 20,
    handleSignals: false,
    async runContainer(d, container) {
      ran++;
      await d.client.updateContainer(container.uuid, { state: 'Running' });
      // A container asking for more than 64 GiB fails; the rest complete.
      const exitCode = container.runtime_constraints.ram > 64 * 2 ** 30 ? 1 : 0;
      await d.client.updateContainer(container.uuid, { state: 'Complete', exit_code: exitCode });
    },
  });
  void dispatcher.run();
});
after(async () => {
  await dispatcher.stop();
  await fake.stop();
});

test('every queued container is run exactly once', async () => {
  const small = fake.addContainers(3, (i) => ({ priority: 10 + i, runtime_constraints: { vcpus: 1, ram: 2 ** 30 } }));
  const done = Promise.all(small.map((c) => fake.waitForState(c.uuid, 'Complete')));
  const records = await done;
  assert.deepEqual(records.map((c) => c.exit_code), [0, 0, 0]);
  await dispatcher.idle();
  for (const c of small) assert.equal(fake.runCount(c.uuid), 1);
  assert.equal(ran, 3);
});

test('the exit code of a failed container is recorded', async () => {
  const big = fake.addContainer({ priority: 1, runtime_constraints: { vcpus: 1, ram: 128 * 2 ** 30 } });
  const record = await fake.waitForState(big.uuid, 'Complete');
  assert.equal(record.exit_code, 1);
  await dispatcher.idle();
});
