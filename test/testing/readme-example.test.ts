// The FakeArvados example of docs/testing.md, in Jest (test/docs/ runs the
// docs' own copy; keep the two in step): it must pass every time, so it
// must not race the dispatcher's poll.
import { expect, it } from '@jest/globals';
import { Dispatcher } from '../../src/index.js';
import { FakeArvados } from '../../src/testing/index.js';

it('the README example completes its container and stops cleanly, run after run', async () => {
  for (let i = 0; i < 5; i++) {
    const fake = await new FakeArvados().start();
    const c = fake.addContainer({ priority: 10, runtime_constraints: { vcpus: 1, ram: 2 ** 28 } });
    const d = new Dispatcher({
      client: fake.client(),
      pollInterval: 50,
      handleSignals: false,
      async runContainer(d, container, updates) {
        await d.client.updateContainer(container.uuid, { state: 'Running' });
        await d.client.updateContainer(container.uuid, { state: 'Complete', exit_code: 0 });
        for await (const _ of updates);
      },
    });
    const done = fake.waitForState(c.uuid, ['Complete', 'Cancelled'], { timeout: 10_000 });
    const settled = new Promise<void>((resolve) => d.on('settled', (uuid) => uuid === c.uuid && resolve()));
    const running = d.run();
    expect((await done).state).toBe('Complete');
    await settled;
    await d.stop();
    await running;
    await fake.stop();
    expect(fake.runCount(c.uuid)).toBe(1);
  }
});
