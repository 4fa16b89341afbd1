// Benchmarks (npm run bench). Every figure is reported as a ratio against a
// baseline measured in the same run, so results compare across machines.
//
// 1. Dispatch throughput: N queued containers, 5 ms added latency per API
//    request. Time from identity to the N-th runContainer call, against the
//    lower bound N*L/lockConcurrency + pages*L, and against lockConcurrency 1
//    (one lock at a time, as the Go library does).
// 2. Steady state: K tracked Running containers. API requests per poll
//    cycle, dispatcher CPU per cycle against a bare fetch of the same pages,
//    and heap per tracked container beyond the record itself.
import { fork } from 'node:child_process';
import { cpus, hostname, totalmem } from 'node:os';
import { writeFileSync } from 'node:fs';
import PQueue from 'p-queue';
import { Dispatcher, ArvadosClient } from '../dist/index.js';
import { UpdateStream } from '../dist/dispatcher/updates.js';

const QUICK = process.argv.includes('--quick');
const LATENCY = 5;
const SIZES = QUICK ? [300] : [1000, 10000];
const K = QUICK ? 2000 : 10000;
const BATCH = 100;

if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc (npm run bench does)');
  process.exit(2);
}

// ---- the fake server process ------------------------------------------------
const server = fork(new URL('./fake-server.mjs', import.meta.url), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
let nextId = 0;
const pending = new Map();
server.on('message', ({ id, ok, value, error }) => {
  const p = pending.get(id);
  pending.delete(id);
  if (ok) p.resolve(value);
  else p.reject(new Error(error));
});
const call = (cmd, args) =>
  new Promise((resolve, reject) => {
    const id = ++nextId;
    pending.set(id, { resolve, reject });
    server.send({ id, cmd, args });
  });

const clientFor = (info) =>
  new ArvadosClient({ apiHost: info.env.ARVADOS_API_HOST, apiToken: info.env.ARVADOS_API_TOKEN, ca: info.caCert, timeout: 30_000 });

const heap = () => {
  for (let i = 0; i < 4; i++) globalThis.gc();
  return process.memoryUsage().heapUsed;
};

// ---- 1. throughput ----------------------------------------------------------
async function throughput(n, lockConcurrency) {
  const info = await call('start', { latency: LATENCY });
  await call('addQueued', { n });
  const client = clientFor(info);
  let handed = 0;
  let t0 = 0;
  let tN = 0;
  const allHanded = new Promise((resolve) => {
    const d = new Dispatcher({
      client,
      pollInterval: 3_600_000,
      batchSize: BATCH,
      lockConcurrency,
      handleSignals: false,
      async runContainer(_d, _c, updates) {
        if (++handed === n) {
          tN = performance.now();
          resolve(d);
        }
        for await (const _ of updates) void _;
      },
    });
    d.on('identified', async () => {
      t0 = performance.now();
      await call('resetCounts');
    });
    d.run().catch((err) => console.error(err));
  });
  const d = await allHanded;
  const counts = await call('counts');
  await d.stop();
  client.close();
  const seconds = (tN - t0) / 1000;
  const pages = Math.ceil(n / BATCH);
  const bound = (n * LATENCY) / lockConcurrency / 1000 + (pages * LATENCY) / 1000;
  return { n, lockConcurrency, seconds, bound, lists: counts['containers.list'] ?? 0, locks: counts['containers.lock'] ?? 0 };
}

// The same list and lock requests issued directly, without a dispatcher: what
// the transport (HTTPS, client, server) costs on this machine.
async function bareRequests(n, concurrency) {
  const info = await call('start', { latency: LATENCY });
  await call('addQueued', { n });
  const client = clientFor(info);
  await client.currentAuthorization();
  const t0 = performance.now();
  const all = await client.listAllContainers({ filters: [['state', '=', 'Queued'], ['priority', '>', '0']], limit: BATCH });
  const q = new PQueue({ concurrency });
  await Promise.all(all.map((c) => q.add(() => client.lockContainer(c.uuid))));
  const seconds = (performance.now() - t0) / 1000;
  client.close();
  return seconds;
}

// ---- 2. steady state --------------------------------------------------------
async function steady(k) {
  const info = await call('start', { latency: 0 });
  await call('addMine', { n: k, tokenUuid: info.rootTokenUuid });
  const client = clientFor(info);
  await client.currentAuthorization(); // warm the connection before measuring

  // Baseline: fetching and parsing the same two queries, no dispatcher.
  const mine = [['locked_by_uuid', '=', info.rootTokenUuid]];
  const queued = [['state', '=', 'Queued'], ['priority', '>', '0']];
  const bare = async () => {
    const c0 = process.cpuUsage();
    await Promise.all([client.listAllContainers({ filters: mine, limit: BATCH }), client.listAllContainers({ filters: queued, limit: BATCH })]);
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1000;
  };
  await bare();
  const bareMs = [];
  for (let i = 0; i < 5; i++) bareMs.push(await bare());

  // Heap of K records held, as parsed from the API.
  const h0 = heap();
  const records = await client.listAllContainers({ filters: mine, limit: BATCH });
  const recordBytes = (heap() - h0) / records.length;
  records.length = 0;

  // The benchmark's runner by itself: an async function suspended in
  // `for await` over an updates stream, without any dispatcher around it.
  const minimalRunner = async (updates) => {
    for await (const _ of updates) void _;
  };
  const r0 = heap();
  const streams = [];
  for (let i = 0; i < k; i++) {
    const s = new UpdateStream();
    streams.push(s, minimalRunner(s));
  }
  const runnerBytes = (heap() - r0) / k;
  for (let i = 0; i < streams.length; i += 2) streams[i].end('stopped');
  streams.length = 0;

  const before = heap();
  const cycles = [];
  let adopted = 0;
  let lastCpu;
  const d = new Dispatcher({
    client,
    pollInterval: 300,
    batchSize: BATCH,
    handleSignals: false,
    runContainer(_d, _c, updates) {
      adopted++;
      return minimalRunner(updates);
    },
  });
  const done = new Promise((resolve) => {
    d.on('cycle', async () => {
      const cpu = process.cpuUsage();
      if (adopted === k && lastCpu) {
        const delta = process.cpuUsage(lastCpu);
        const counts = await call('counts');
        cycles.push({ cpuMs: (delta.user + delta.system) / 1000, requests: Object.values(counts).reduce((a, b) => a + b, 0) });
        if (cycles.length === 6) resolve();
      }
      await call('resetCounts');
      lastCpu = process.cpuUsage();
      void cpu;
    });
  });
  d.run().catch((err) => console.error(err));
  await done;
  const withTrackers = heap();
  await d.stop();
  // Measured after the stop, when trackers, runners and their records are
  // gone: both measurements see the same long-lived state, which makes the
  // difference steadier than one taken against a heap before the start.
  const after = heap();
  client.close();
  const measured = cycles.slice(1); // the first includes adoption
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return {
    k,
    requestsPerCycle: median(measured.map((c) => c.requests)),
    expectedRequests: Math.floor(k / BATCH) + 1 + 1, // Q1 pages (+ the empty page that ends it) + one Q2 page
    cpuMsPerCycle: median(measured.map((c) => c.cpuMs)),
    bareFetchCpuMs: median(bareMs),
    bytesPerTracked: (withTrackers - Math.min(before, after)) / k - recordBytes,
    recordBytes,
    runnerBytes,
  };
}

// ---- run and report ---------------------------------------------------------
const fmt = (x, d = 2) => x.toFixed(d);
const lines = [];
const out = (s = '') => {
  console.log(s);
  lines.push(s);
};

try {
  out(`# arvados-dispatch benchmarks${QUICK ? ' (quick)' : ''}`);
  out();
  out(`Machine: ${hostname()}, ${cpus()[0]?.model ?? 'unknown CPU'} x ${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`);
  out();
  out(`## Dispatch throughput (${LATENCY} ms added latency per request, batch size ${BATCH})`);
  out();
  out('| N | lockConcurrency | seconds | lower bound (s) | x bound | x same requests without dispatcher | speed-up vs concurrency 1 | list requests | lock requests |');
  out('|---|---|---|---|---|---|---|---|---|');
  for (const n of SIZES) {
    const bare = await bareRequests(n, 8);
    const fast = await throughput(n, 8);
    const slow = await throughput(n, 1);
    for (const r of [fast, slow]) {
      const vsBare = r === fast ? fmt(r.seconds / bare) : '';
      const speedup = r === fast ? `${fmt(slow.seconds / fast.seconds, 1)}x` : '1x';
      out(`| ${r.n} | ${r.lockConcurrency} | ${fmt(r.seconds)} | ${fmt(r.bound)} | ${fmt(r.seconds / r.bound)} | ${vsBare} | ${speedup} | ${r.lists} | ${r.locks} |`);
    }
    out(`| ${n} | 8, no dispatcher | ${fmt(bare)} | ${fmt((n * LATENCY) / 8 / 1000 + (Math.ceil(n / BATCH) * LATENCY) / 1000)} | ${fmt(bare / ((n * LATENCY) / 8 / 1000 + (Math.ceil(n / BATCH) * LATENCY) / 1000))} | 1.00 | | | |`);
  }
  out();
  out('Targets: within 1.5x of the lower bound; at least 5x faster than one lock at a time at concurrency 8.');
  out('The "without dispatcher" row lists and locks the same containers with a bare client and p-queue: the');
  out('difference between it and the bound is what HTTPS, the client and the fake server cost on this machine.');
  out();
  const s = await steady(K);
  out(`## Steady state (${s.k} tracked Running containers, batch size ${BATCH})`);
  out();
  out('| measure | value | baseline | ratio |');
  out('|---|---|---|---|');
  out(`| API requests per poll cycle | ${s.requestsPerCycle} | ${s.expectedRequests} (pages of the two queries) | ${fmt(s.requestsPerCycle / s.expectedRequests)} |`);
  out(`| dispatcher CPU per cycle (ms) | ${fmt(s.cpuMsPerCycle, 1)} | ${fmt(s.bareFetchCpuMs, 1)} (fetch + parse the same pages) | ${fmt(s.cpuMsPerCycle / s.bareFetchCpuMs)} |`);
  out(`| heap per tracked container beyond its record (bytes) | ${Math.round(s.bytesPerTracked)} | ${Math.round(s.recordBytes)} (the record itself) | ${fmt(s.bytesPerTracked / s.recordBytes)} |`);
  out(`| of which the benchmark's runner (an async function waiting in \`for await\`) | ${Math.round(s.runnerBytes)} | | |`);
  out(`| dispatcher's own bookkeeping per tracked container | ${Math.round(s.bytesPerTracked - s.runnerBytes)} | ${Math.round(s.recordBytes)} (the record itself) | ${fmt((s.bytesPerTracked - s.runnerBytes) / s.recordBytes)} |`);
  out();
  out('Targets: requests = pages of the two queries, nothing per container; under 2 KB per tracked container beyond the record.');
  if (!QUICK) writeFileSync(new URL('./results.md', import.meta.url), lines.join('\n') + '\n');
} finally {
  server.disconnect();
}
