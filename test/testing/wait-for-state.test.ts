// FakeArvados.waitForState: event-driven, at once when already there, and a
// clear rejection when it cannot or did not happen.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { FakeArvados } from '../../src/testing/index.js';
import { raw } from '../helpers/raw.js';

describe('FakeArvados.waitForState', () => {
  let fake: FakeArvados;
  beforeAll(async () => {
    fake = await new FakeArvados().start();
  });
  afterAll(() => fake.stop());

  it('resolves at once with the container when it is already in the state', async () => {
    const c = fake.addContainer();
    await expect(fake.waitForState(c.uuid, 'Queued')).resolves.toMatchObject({ uuid: c.uuid, state: 'Queued' });
  });

  it('wakes on a change made through the API, and sees a state that is passed through at once', async () => {
    const c = fake.addContainer();
    const locked = fake.waitForState(c.uuid, 'Locked', { timeout: 0 });
    const running = fake.waitForState(c.uuid, ['Running', 'Complete']);
    const path = `/arvados/v1/containers/${c.uuid}`;
    const token = fake.rootToken.token;
    // Locked lasts only until the next request; the waiter was woken by the change itself.
    await raw(fake, { method: 'POST', path: `${path}/lock`, token });
    await raw(fake, { method: 'PUT', path, token, body: { container: { state: 'Running' } } });
    await expect(locked).resolves.toMatchObject({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    await expect(running).resolves.toMatchObject({ state: 'Running' });
  });

  it('wakes on side-door changes (force, complete) too', async () => {
    const c = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    const done = fake.waitForState(c.uuid, 'Complete');
    fake.completeContainer(c.uuid, 3);
    await expect(done).resolves.toMatchObject({ state: 'Complete', exit_code: 3 });
  });

  it('rejects after the timeout, naming the container, its state and the wanted ones', async () => {
    const c = fake.addContainer();
    await expect(fake.waitForState(c.uuid, ['Running', 'Complete'], { timeout: 50 })).rejects.toThrow(
      `waitForState: container ${c.uuid} is still Queued after 50 ms (waiting for Running or Complete)`,
    );
  });

  it('rejects with the signal reason on abort, also when aborted before the call', async () => {
    const c = fake.addContainer();
    const ac = new AbortController();
    const waiting = fake.waitForState(c.uuid, 'Running', { signal: ac.signal });
    ac.abort(new Error('test over'));
    await expect(waiting).rejects.toThrow('test over');
    await expect(fake.waitForState(c.uuid, 'Running', { signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow('already');
  });

  it('rejects early when the container is Cancelled (nothing follows) or deleted', async () => {
    const a = fake.addContainer();
    const never = fake.waitForState(a.uuid, 'Complete');
    fake.cancelContainer(a.uuid);
    await expect(never).rejects.toThrow(`container ${a.uuid} is Cancelled and can never be Complete`);
    await expect(fake.waitForState(a.uuid, 'Cancelled')).resolves.toMatchObject({ state: 'Cancelled' });
    const b = fake.addContainer();
    const gone = fake.waitForState(b.uuid, 'Running');
    fake.deleteContainer(b.uuid);
    await expect(gone).rejects.toThrow(`container ${b.uuid} does not exist`);
    await expect(fake.waitForState('zzzzz-dz642-nosuchcontainer', 'Queued')).rejects.toThrow(/does not exist/);
  });
});
