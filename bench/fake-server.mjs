// FakeArvados in its own process for the benchmarks, so that the server's CPU
// time does not land on the dispatcher's event loop. Driven over IPC.
import { FakeArvados } from '../dist/testing/index.js';

let fake;
const handlers = {
  async start({ latency, maxItemsPerResponse, tls = true }) {
    await fake?.stop();
    fake = await new FakeArvados({ latency, maxItemsPerResponse, tls, recordRequests: false }).start();
    return { env: fake.env(), caCert: fake.caCert, rootTokenUuid: fake.rootToken.uuid };
  },
  addQueued({ n }) {
    fake.addContainers(n, () => ({ priority: 1 + Math.floor(Math.random() * 1000) }));
  },
  addMine({ n, tokenUuid }) {
    fake.addContainers(n, () => ({ state: 'Running', locked_by_uuid: tokenUuid }));
  },
  cpu() {
    return process.cpuUsage();
  },
  counts() {
    return fake.counts();
  },
  resetCounts() {
    fake.resetCounts();
  },
  async stop() {
    await fake?.stop();
    fake = undefined;
  },
};

process.on('message', async ({ id, cmd, args }) => {
  try {
    process.send({ id, ok: true, value: await handlers[cmd](args ?? {}) });
  } catch (err) {
    process.send({ id, ok: false, error: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => void handlers.stop().then(() => process.exit(0)));
