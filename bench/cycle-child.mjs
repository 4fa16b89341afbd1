// One measurement of bench/cycle.mjs in a fresh process, with the build
// named by config.dist (this tree's dist, or the previous release's):
// `node cycle-child.mjs '<json config>'`. Sends its result over IPC.
import https from 'node:https';
import PQueue from 'p-queue';

const config = JSON.parse(process.argv[2]);
const { info } = config;
const { Dispatcher, ArvadosClient } = await import(new URL(`${config.dist}/index.js`, import.meta.url).href);

const agent = new https.Agent({ keepAlive: true, ca: info.caCert });
const client = new ArvadosClient({ apiHost: info.env.ARVADOS_API_HOST, apiToken: info.env.ARVADOS_API_TOKEN, ca: info.caCert, agent, timeout: 120_000 });
const requests = [];
client.on('request', (e) => requests.push({ ...e, end: performance.now() }));

const gc = () => {
  for (let i = 0; i < 4; i++) globalThis.gc();
};
const cpuMs = (since) => {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function follow(updates) {
  for await (const _ of updates) void _;
}
/** Asks the orchestrator to do something in the fake server; resolves with its answer. */
function ask(cmd, args) {
  return new Promise((resolve) => {
    const on = (m) => {
      if (m?.type === 'done' && m.cmd === cmd) {
        process.off('message', on);
        resolve(m.value);
      }
    };
    process.on('message', on);
    process.send({ type: 'ask', cmd, args });
  });
}

/** CPU per cycle with K held, `changes` containers changed before each cycle. */
async function steady({ k, changes, cycles = 5, pollInterval = 1000 }) {
  let adopted = 0;
  const d = new Dispatcher({ client, pollInterval, handleSignals: false, events: false, runContainer: (_d, _c, u) => (adopted++, follow(u)) });
  const per = [];
  void d.run();
  while (adopted < k) await sleep(50);
  // Settle (the sweeps after the adoptions), then measure regular cycles, sweeps included in their share.
  await new Promise((r) => d.once('cycle', r));
  await new Promise((r) => d.once('cycle', r));
  for (let i = 0; i < cycles; i++) {
    await ask('touch', { n: changes });
    const c0 = process.cpuUsage();
    const r0 = requests.length;
    await new Promise((r) => d.once('cycle', r));
    per.push({ cpu: cpuMs(c0), requests: requests.length - r0 });
  }
  gc();
  const out = {
    k,
    changes,
    cpuMsPerCycle: median(per.map((p) => p.cpu)),
    // Sweeps included: every cycle measured, averaged.
    cpuMsMean: per.reduce((a, p) => a + p.cpu, 0) / per.length,
    cpuMsMax: Math.max(...per.map((p) => p.cpu)),
    requestsPerCycle: median(per.map((p) => p.requests)),
  };
  await d.stop();
  return out;
}

/** Holding one container at the default poll interval, events on: CPU per second once warmed up. */
async function idle({ warm = 15_000, window = 30_000 }) {
  let held = false;
  const d = new Dispatcher({ client, handleSignals: false, events: { ca: info.caCert }, runContainer: (_d, _c, u) => ((held = true), follow(u)) });
  void d.run();
  while (!held) await sleep(50);
  await sleep(warm);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(window);
  const out = { cpuMsPerSecond: cpuMs(c0) / ((performance.now() - t0) / 1000) };
  await d.stop();
  return out;
}

/** Adopting K own Running containers at start: run() to the K-th hand-over. */
async function adopt({ k }) {
  let n = 0;
  let at = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let cpu = 0;
  const d = new Dispatcher({
    client,
    pollInterval: 3_600_000,
    handleSignals: false,
    events: false,
    runContainer(_d, _c, u) {
      if (++n === k) {
        at = performance.now() - t0;
        cpu = cpuMs(c0);
        setImmediate(() => void d.stop());
      }
      return follow(u);
    },
  });
  await d.run();
  return { k, ms: at, cpuMs: cpu, requests: requests.length };
}

/** RSS and heap with K held (after GC), for memory per held container. */
async function memory({ k }) {
  let adopted = 0;
  const d = new Dispatcher({ client, pollInterval: 500, handleSignals: false, events: false, runContainer: (_d, _c, u) => (adopted++, follow(u)) });
  void d.run();
  while (adopted < k) await sleep(50);
  for (let i = 0; i < 3; i++) await new Promise((r) => d.once('cycle', r));
  gc();
  await sleep(200);
  gc();
  const m = process.memoryUsage();
  await d.stop();
  return { k, rss: m.rss, heapUsed: m.heapUsed };
}

/** Locking N queued at the server's latency, C at a time; `bare`: the same requests without a dispatcher. */
async function lock({ n, concurrency, bare = false }) {
  let handed = 0;
  const isLock = (r) => r.path === 'containers/{uuid}/lock';
  if (bare) {
    await client.currentAuthorization();
    const q = new PQueue({ concurrency });
    const locks = [];
    for await (const page of client.pageContainers({ filters: [['state', '=', 'Queued'], ['priority', '>', '0']], limit: 1000, select: ['uuid'] })) {
      for (const c of page.items) locks.push(q.add(() => client.lockContainer(c.uuid)));
    }
    await Promise.all(locks);
  } else {
    const d = new Dispatcher({
      client,
      pollInterval: 3_600_000,
      lockConcurrency: concurrency,
      handleSignals: false,
      events: false,
      runContainer(_d, _c, u) {
        if (++handed === n) setImmediate(() => void d.stop());
        return follow(u);
      },
    });
    await d.run();
  }
  const locks = requests.filter(isLock);
  const first = Math.min(...locks.map((r) => r.end - r.durationMs));
  const last = Math.max(...locks.map((r) => r.end));
  return { n, bare, lockingMs: last - first, endToEndMs: performance.now() };
}

const jobs = { steady, idle, adopt, memory, lock };
try {
  const result = await jobs[config.job](config);
  process.send({ type: 'result', result }, () => process.exit(0));
} catch (err) {
  process.send({ type: 'error', error: String(err?.stack ?? err) }, () => process.exit(1));
}
