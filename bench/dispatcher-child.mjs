// One benchmark job in a fresh process (so that process start, CPU and
// resident memory belong to that job alone): `node dispatcher-child.mjs
// '<json config>'`. Sends its results over IPC and exits.
import https from 'node:https';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import PQueue from 'p-queue';
import { Dispatcher, ArvadosClient } from '../dist/index.js';
import { UpdateStream } from '../dist/dispatcher/updates.js';

const config = JSON.parse(process.argv[2]);
const { info } = config;

/** An https agent that counts the bytes its sockets read (answers, headers included). */
class CountingAgent extends https.Agent {
  #sockets = new Set();
  #closed = 0;
  createConnection(...args) {
    const s = super.createConnection(...args);
    this.#sockets.add(s);
    s.once('close', () => {
      this.#closed += s.bytesRead;
      this.#sockets.delete(s);
    });
    return s;
  }
  get bytesRead() {
    let n = this.#closed;
    for (const s of this.#sockets) n += s.bytesRead;
    return n;
  }
}

const agent = new CountingAgent({ keepAlive: true, ca: info.caCert });
const client = new ArvadosClient({ apiHost: info.env.ARVADOS_API_HOST, apiToken: info.env.ARVADOS_API_TOKEN, ca: info.caCert, agent, timeout: 60_000 });
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
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function followUpdates(updates) {
  for await (const _ of updates) void _;
}

// ---- steady state: K tracked Running containers ---------------------------------
async function steady({ k, batch, cycles = 5, baseline = false }) {
  const mine = [['locked_by_uuid', '=', info.rootTokenUuid]];
  await client.currentAuthorization();
  const out = { k, batch };
  if (baseline) {
    // The same-run baseline: one fetch of all pages of full records, parsed and checked by the client.
    const rounds = [];
    for (let i = 0; i < 4; i++) {
      const c0 = process.cpuUsage();
      const b0 = agent.bytesRead;
      const r0 = requests.length;
      const all = await client.listAllContainers({ filters: mine, limit: batch });
      rounds.push({ cpu: cpuMs(c0), bytes: agent.bytesRead - b0, requests: requests.length - r0, n: all.length });
    }
    const measured = rounds.slice(1);
    out.baselineCpuMs = median(measured.map((r) => r.cpu));
    out.baselineBytes = median(measured.map((r) => r.bytes));
    out.baselineRequests = median(measured.map((r) => r.requests));
    // What the client alone spends on the summaries a cycle reads: the rest of a cycle is the dispatcher's.
    const lean = [];
    for (let i = 0; i < 4; i++) {
      const c0 = process.cpuUsage();
      await client.listAllContainers({ filters: mine, limit: batch, select: ['uuid', 'state', 'priority', 'locked_by_uuid', 'modified_at'] });
      lean.push(cpuMs(c0));
    }
    out.summaryFetchCpuMs = median(lean.slice(1));
    gc();
  }
  let adopted = 0;
  const d = new Dispatcher({
    client,
    pollInterval: 200,
    batchSize: batch,
    // Every cycle a full sweep: what this section measures (bench/cycle.mjs measures incremental polls).
    incremental: false,
    handleSignals: false,
    events: false,
    runContainer(_d, _c, updates) {
      adopted++;
      return followUpdates(updates);
    },
  });
  const per = [];
  let mark;
  const done = new Promise((resolve) => {
    let settled = 0;
    d.on('cycle', () => {
      if (adopted < k) return;
      // Two cycles to settle after the adoptions, then measure.
      if (++settled <= 2) {
        mark = { cpu: process.cpuUsage(), bytes: agent.bytesRead, requests: requests.length };
        return;
      }
      const reqs = requests.slice(mark.requests);
      per.push({
        cpu: cpuMs(mark.cpu),
        bytes: agent.bytesRead - mark.bytes,
        lists: reqs.filter((r) => r.path === 'containers').length,
        other: reqs.filter((r) => r.path !== 'containers').length,
      });
      mark = { cpu: process.cpuUsage(), bytes: agent.bytesRead, requests: requests.length };
      if (per.length === cycles) resolve();
    });
  });
  void d.run();
  await done;
  gc();
  const mem = process.memoryUsage();
  out.rss = mem.rss;
  out.heapUsed = mem.heapUsed;
  out.cpuMsPerCycle = median(per.map((c) => c.cpu));
  out.bytesPerCycle = median(per.map((c) => c.bytes));
  out.listsPerCycle = median(per.map((c) => c.lists));
  out.otherPerCycle = median(per.map((c) => c.other));
  await d.stop();
  return out;
}

// ---- locking N queued containers ------------------------------------------------
async function lock({ n, batch, concurrency, bare = false }) {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  let handed = 0;
  let allAt = 0;
  let cpuAtFirstLock;
  let cpuLocking = 0;
  const isLock = (r) => r.path === 'containers/{uuid}/lock';
  client.on('request', (e) => {
    if (isLock(e) && !cpuAtFirstLock) cpuAtFirstLock = process.cpuUsage();
  });
  if (bare) {
    // The same requests without a dispatcher: list (summaries), then lock C at a time.
    await client.currentAuthorization();
    loop.enable();
    const q = new PQueue({ concurrency });
    const locks = [];
    for await (const page of client.pageContainers({ filters: [['state', '=', 'Queued'], ['priority', '>', '0']], limit: batch, select: ['uuid'] })) {
      for (const c of page.items) locks.push(q.add(() => client.lockContainer(c.uuid)));
    }
    await Promise.all(locks);
    allAt = performance.now();
    cpuLocking = cpuMs(cpuAtFirstLock);
  } else {
    const d = new Dispatcher({
      client,
      pollInterval: 3_600_000,
      batchSize: batch,
      lockConcurrency: concurrency,
      handleSignals: false,
      events: false,
      runContainer(_d, _c, updates) {
        if (++handed === n) {
          allAt = performance.now();
          cpuLocking = cpuMs(cpuAtFirstLock);
          setImmediate(() => void d.stop());
        }
        return followUpdates(updates);
      },
    });
    d.on('identified', () => loop.enable());
    await d.run();
  }
  loop.disable();
  const locks = requests.filter(isLock);
  const first = Math.min(...locks.map((r) => r.end - r.durationMs));
  const last = Math.max(...locks.map((r) => r.end));
  const durations = locks.map((r) => r.durationMs);
  return {
    n,
    bare,
    endToEndMs: allAt, // performance.now() counts from the process's start
    lockingMs: last - first,
    lockRequests: locks.length,
    listRequests: requests.filter((r) => r.path === 'containers').length,
    lockMeanMs: durations.reduce((a, b) => a + b, 0) / durations.length,
    lockP99Ms: quantile(durations, 0.99),
    cpuLockingMs: cpuLocking,
    loopDelayMeanMs: loop.mean / 1e6,
    loopDelayP99Ms: loop.percentile(99) / 1e6,
  };
}

// ---- pickup latency ---------------------------------------------------------------
async function pickup({ events, pollInterval }) {
  const d = new Dispatcher({
    client,
    pollInterval,
    handleSignals: false,
    events: events ? { ca: info.caCert } : false,
    runContainer(_d, c, updates) {
      process.send({ type: 'handed', uuid: c.uuid, at: Date.now() });
      return followUpdates(updates);
    },
  });
  let ready = false;
  d.on('cycle', () => {
    if (!ready) {
      ready = true;
      // With events, give the subscription a moment before the first container is created.
      setTimeout(() => process.send({ type: 'ready' }), events ? 1000 : 0);
    }
  });
  process.on('message', (m) => {
    if (m === 'stop') void d.stop();
  });
  await d.run();
  return { done: true };
}

// ---- where the memory of a tracked container goes ---------------------------------
async function breakdown({ k }) {
  const heap = () => {
    gc();
    return process.memoryUsage().heapUsed;
  };
  await client.currentAuthorization();
  // Full records as the client returns them (parsed, checked, frozen), held.
  const h0 = heap();
  const records = await client.listAllContainers({ filters: [['locked_by_uuid', '=', info.rootTokenUuid]], limit: 1000 });
  const recordBytes = (heap() - h0) / records.length;
  records.length = 0;
  // A runner by itself: an async function suspended in `for await` over an updates stream.
  const r0 = heap();
  const held = [];
  for (let i = 0; i < k; i++) {
    const s = new UpdateStream();
    held.push(s, followUpdates(s));
  }
  const runnerBytes = (heap() - r0) / k;
  for (let i = 0; i < held.length; i += 2) held[i].end('stopped');
  return { k, recordBytes, runnerBytes };
}

const jobs = { steady, lock, pickup, breakdown };
try {
  const result = await jobs[config.job](config);
  process.send({ type: 'result', result }, () => process.exit(0));
} catch (err) {
  process.send({ type: 'error', error: String(err?.stack ?? err) }, () => process.exit(1));
}
