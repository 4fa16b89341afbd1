// Shared set-up of the dispatcher's tests: a FakeArvados over HTTPS and
// dispatchers on it with short intervals, all stopped after each test.
import { afterEach } from '@jest/globals';
import { Dispatcher, type Container, type DispatcherOptions, type RunContainer } from '../../src/index.js';
import { FakeArvados, type FakeArvadosOptions } from '../../src/testing/index.js';

export interface Harness {
  fake: FakeArvados;
  /** A dispatcher on the fake (pollInterval 25 ms, no signal handling); stopped after the test. */
  dispatcher(opts?: Partial<DispatcherOptions> & { token?: string }): { d: Dispatcher; warnings: string[] };
}

const fakes: FakeArvados[] = [];
const dispatchers: Dispatcher[] = [];

afterEach(async () => {
  await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
  await Promise.all(fakes.splice(0).map((f) => f.stop()));
});

export async function harness(fakeOpts: FakeArvadosOptions = {}): Promise<Harness> {
  const fake = await new FakeArvados(fakeOpts).start();
  fakes.push(fake);
  return {
    fake,
    dispatcher(opts = {}) {
      const { token, ...rest } = opts;
      const base: DispatcherOptions = {
        client: fake.client({ token, retryDelay: 5, maxRetryDelay: 20, timeout: 2000 }),
        pollInterval: 25,
        handleSignals: false,
        shutdownTimeout: 5000,
      };
      if (!rest.runner && !rest.runContainer) base.runContainer = drainRunner;
      const d = new Dispatcher({ ...base, ...rest });
      dispatchers.push(d);
      const warnings: string[] = [];
      d.on('warning', (m) => warnings.push(m));
      return { d, warnings };
    },
  };
}

/** Waits until the updates stream ends. */
export async function drain(updates: AsyncIterable<Readonly<Container>>): Promise<void> {
  for await (const _ of updates) void _;
}

/** A runner that follows its container until the stream ends. */
export const drainRunner: RunContainer = async (_d, _c, updates) => drain(updates);

/** Like crunch-run: Running, then Complete, then waits for the stream to end. */
export const crunchRunLike: RunContainer = async (d, c, updates) => {
  await d.client.updateContainer(c.uuid, { state: 'Running' });
  await d.client.updateContainer(c.uuid, { state: 'Complete', exit_code: 0 });
  await drain(updates);
};
