// Benchmarks (npm run bench). Every figure that depends on the machine is
// given as a ratio against a baseline measured in the same run.
//
// (a) Steady state: K tracked Running containers of realistic size. Response
//     bytes per tracked container per cycle, dispatcher CPU per cycle against
//     one fetch of every page of full records, list requests per cycle.
// (b) Locking N queued containers at L ms of added latency: the locking phase
//     (first lock request sent to last lock answer) and end to end (process
//     start to the N-th hand-over) against the bound N·L/C, and the same
//     requests made without a dispatcher.
// (c) Memory: resident memory per tracked container (RSS with K tracked minus
//     RSS with none, each in a fresh process), and batch size 100 vs 1000.
// (d) Pickup latency at a 10 s poll interval, events on and off: container
//     creation (in the server) to hand-over (in the dispatcher).
//
// Sizes: BENCH_SIZE=full (the issue's sizes; about 5 minutes on 2 cores),
// default `quick` (smaller; about 2 minutes), or `--quick`. BENCH_SECTIONS=a,b,c,d
// runs only some. Results go to bench/results.md (full size only), keeping the
// sections other benchmarks write there.
import { fork } from 'node:child_process';
import { cpus, hostname, totalmem } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';

const FULL = process.env.BENCH_SIZE === 'full' && !process.argv.includes('--quick');
const SECTIONS = new Set((process.env.BENCH_SECTIONS ?? 'a,b,c,d').split(','));
const S = FULL
  ? { steadyK: 10_000, lockN: [1000, 10_000], latencies: [5, 10], memK: [1000, 10_000], pickups: { on: 40, off: 16 } }
  : { steadyK: 2000, lockN: [1000], latencies: [5, 10], memK: [1000, 5000], pickups: { on: 25, off: 8 } };
const BATCH = 100;
const CONCURRENCY = 8;
const POLL = 10_000;
const PICKUP_LATENCY = 5;

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

/** Runs one job in a fresh dispatcher process; `onMessage` sees its other messages. */
function child(config, onMessage) {
  const p = fork(new URL('./dispatcher-child.mjs', import.meta.url), [JSON.stringify(config)], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const result = new Promise((resolve, reject) => {
    p.on('message', (m) => {
      if (m?.type === 'result') resolve(m.result);
      else if (m?.type === 'error') reject(new Error(m.error));
      else onMessage?.(m, p);
    });
    p.on('exit', (code) => reject(new Error(`benchmark child exited with ${code}`)));
  });
  return { process: p, result };
}

const fmt = (x, d = 2) => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(d));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const lines = [];
const out = (s = '') => {
  console.log(s);
  lines.push(s);
};

// ---- (a) steady state -------------------------------------------------------
async function steadySection() {
  const info = await call('start', { latency: 0 });
  await call('addMine', { n: S.steadyK, tokenUuid: info.rootTokenUuid });
  const r = await child({ job: 'steady', info, k: S.steadyK, batch: BATCH, baseline: true }).result;
  const r1000 = await child({ job: 'steady', info, k: S.steadyK, batch: 1000, baseline: true }).result;
  const pages = Math.floor(S.steadyK / BATCH) + 1; // the last page of a walk is the first one shorter than the limit
  out(`## (a) Steady state: ${S.steadyK} tracked Running containers, batch size ${BATCH}, records of realistic size`);
  out();
  out('| measure | select-based polling | one fetch of all pages of full records (same run) | ratio | target |');
  out('|---|---|---|---|---|');
  out(`| response bytes per tracked container per cycle | ${fmt(r.bytesPerCycle / S.steadyK, 0)} | ${fmt(r.baselineBytes / S.steadyK, 0)} | ${fmt(r.bytesPerCycle / r.baselineBytes)} | ≤ 200 B |`);
  out(`| dispatcher CPU per cycle (ms) | ${fmt(r.cpuMsPerCycle, 1)} | ${fmt(r.baselineCpuMs, 1)} | ${fmt(r.cpuMsPerCycle / r.baselineCpuMs)} | ≤ 0.15x |`);
  out(`| of which the client fetching, parsing and checking the summaries (ms) | ${fmt(r.summaryFetchCpuMs, 1)} | | ${fmt(r.summaryFetchCpuMs / r.baselineCpuMs)} | |`);
  out(`| list requests per cycle | ${r.listsPerCycle} | ${r.baselineRequests} | | = pages: ${pages} + 1 (the Queued query) |`);
  out(`| other requests per cycle | ${r.otherPerCycle} | | | 0 |`);
  out(`| with batch size 1000: dispatcher CPU per cycle (ms) | ${fmt(r1000.cpuMsPerCycle, 1)} | ${fmt(r1000.baselineCpuMs, 1)} (batch 1000) | ${fmt(r1000.cpuMsPerCycle / r1000.baselineCpuMs)} | ≤ 0.15x |`);
  out(`| with batch size 1000: of which the client (ms) | ${fmt(r1000.summaryFetchCpuMs, 1)} | | ${fmt(r1000.summaryFetchCpuMs / r1000.baselineCpuMs)} | |`);
  out(`| with batch size 1000: list requests per cycle | ${r1000.listsPerCycle} | ${r1000.baselineRequests} | | |`);
  out();
  out('Bytes are counted on the dispatcher\'s sockets (TLS records and HTTP headers included, no compression).');
  out('Each summary item is `uuid, state, priority, locked_by_uuid, modified_at` plus the `kind` the server adds');
  out('to every selected item; the priority is an 18-digit number as real priorities (`cr.priority·2^50 − ms`) are.');
  out('Gap to 200 B: an item is 208 B of JSON, of which `kind` is 27 B (the server adds it to every selected item) and');
  out('`locked_by_uuid` 47 B (implied by the tracked query\'s own filter, so that query could leave it out). CPU: at batch');
  out('size 100 the client\'s own cost per request (TLS, HTTP, JSON, checking each item) is most of a poll; batch size 1000');
  out('makes a tenth of the requests and meets the target, hence the recommended default of 1000.');
  out();
  return r;
}

// ---- (b) locking ------------------------------------------------------------
async function lockSection() {
  out(`## (b) Locking N queued containers (lockConcurrency C = ${CONCURRENCY}, batch size ${BATCH})`);
  out();
  out('| N | latency L (ms) | bound N·L/C (s) | locking phase (s) | x bound | end to end (s) | x bound | same requests, no dispatcher: locking (s) | x bound | mean lock request (ms) | CPU per lock, dispatcher / no dispatcher (ms) | event-loop delay p99 (ms) |');
  out('|---|---|---|---|---|---|---|---|---|---|---|---|');
  const rows = [];
  for (const n of S.lockN) {
    for (const latency of S.latencies) {
      const bound = (n * latency) / CONCURRENCY / 1000;
      const info = await call('start', { latency });
      await call('addQueued', { n });
      const bare = await child({ job: 'lock', info, n, batch: BATCH, concurrency: CONCURRENCY, bare: true }).result;
      const info2 = await call('start', { latency });
      await call('addQueued', { n });
      const r = await child({ job: 'lock', info: info2, n, batch: BATCH, concurrency: CONCURRENCY }).result;
      rows.push({ n, latency, bound, r, bare });
      out(
        `| ${n} | ${latency} | ${fmt(bound)} | ${fmt(r.lockingMs / 1000)} | ${fmt(r.lockingMs / 1000 / bound)} | ${fmt(r.endToEndMs / 1000)} | ${fmt(r.endToEndMs / 1000 / bound)} | ` +
          `${fmt(bare.lockingMs / 1000)} | ${fmt(bare.lockingMs / 1000 / bound)} | ${fmt(r.lockMeanMs)} | ${fmt(r.cpuLockingMs / n, 2)} / ${fmt(bare.cpuLockingMs / n, 2)} | ${fmt(r.loopDelayP99Ms, 1)} |`,
      );
    }
  }
  out();
  out('Targets: locking phase ≤ 1.15x the bound, end to end (from process start, module loading included) ≤ 1.3x.');
  out('Where the time goes: the locking phase is about N/C lock requests in a row, so its ratio to the bound is the mean');
  out('lock request time over L (the fake server\'s timer adds ~1 ms to every L, TLS and JSON the rest); the');
  out('"no dispatcher" column makes the same requests with a bare client, so the difference between the two is ours.');
  out('Gap to the bound: the fake server needs about 0.7 ms of CPU per lock (TLS, HTTP, the container rules), so with 8 in');
  out('flight on a shared 2-core machine it is the bottleneck and lock requests take L plus several ms; the bound counts');
  out('latency only. End to end adds module loading, identifying the token and reading every page of the Queued query');
  out('before the first lock (locks go in priority order), N/batch pages of L each.');
  out();
  return rows;
}

// ---- (c) memory ---------------------------------------------------------------
async function memorySection() {
  const run = async (k, batch) => {
    const info = await call('start', { latency: 0 });
    if (k > 0) await call('addMine', { n: k, tokenUuid: info.rootTokenUuid });
    return child({ job: 'steady', info, k, batch, cycles: 3 }).result;
  };
  const none = await run(0, BATCH);
  const rows = [];
  for (const k of S.memK) rows.push(await run(k, BATCH));
  const bigK = S.memK[S.memK.length - 1];
  const big = await run(bigK, 1000);
  const noneBig = await run(0, 1000);
  const infoB = await call('start', { latency: 0 });
  await call('addMine', { n: bigK, tokenUuid: infoB.rootTokenUuid });
  const parts = await child({ job: 'breakdown', info: infoB, k: bigK }).result;
  const last = rows[rows.length - 1];
  const heapPer = (last.heapUsed - none.heapUsed) / last.k;
  out(`## (c) Memory per tracked container (fresh process per row, after GC)`);
  out();
  out('| K tracked | batch size | RSS (MiB) | RSS minus RSS with none (KiB per container) | heap used minus none (KiB per container) | CPU per cycle (ms) | list requests per cycle | Go dispatcher |');
  out('|---|---|---|---|---|---|---|---|');
  out(`| 0 | ${BATCH} | ${fmt(none.rss / 2 ** 20, 1)} | | | ${fmt(none.cpuMsPerCycle, 1)} | ${none.listsPerCycle} | 7 MB |`);
  for (const r of rows) {
    out(`| ${r.k} | ${BATCH} | ${fmt(r.rss / 2 ** 20, 1)} | ${fmt((r.rss - none.rss) / r.k / 1024, 1)} | ${fmt((r.heapUsed - none.heapUsed) / r.k / 1024, 1)} | ${fmt(r.cpuMsPerCycle, 1)} | ${r.listsPerCycle} | ~13 KB per container |`);
  }
  out(`| 0 | 1000 | ${fmt(noneBig.rss / 2 ** 20, 1)} | | | ${fmt(noneBig.cpuMsPerCycle, 1)} | ${noneBig.listsPerCycle} | |`);
  out(`| ${big.k} | 1000 | ${fmt(big.rss / 2 ** 20, 1)} | ${fmt((big.rss - noneBig.rss) / big.k / 1024, 1)} | ${fmt((big.heapUsed - noneBig.heapUsed) / big.k / 1024, 1)} | ${fmt(big.cpuMsPerCycle, 1)} | ${big.listsPerCycle} | |`);
  out();
  out(`Where the heap of a tracked container goes (K = ${last.k}): ${fmt(heapPer / 1024, 1)} KiB in all, of which its full record`);
  out(`as parsed ${fmt(parts.recordBytes / 1024, 1)} KiB (held once: the tracker, the runner and the updates slot share one frozen object),`);
  out(`the benchmark's runner (an async function waiting in \`for await\` on its updates) ${fmt(parts.runnerBytes / 1024, 1)} KiB, and the`);
  out(`dispatcher's own bookkeeping (tracker, maps, runner promise chain) the remaining ${fmt((heapPer - parts.recordBytes - parts.runnerBytes) / 1024, 1)} KiB.`);
  out('Summaries and pages are not kept past their cycle. RSS beyond the heap is V8\'s reserve and fragmentation (it does not');
  out('return freed pages at once), which is why RSS per container falls as K grows.');
  out();
  return { none, rows, big, noneBig, parts };
}

// ---- (d) pickup latency -------------------------------------------------------
async function pickupSection() {
  const measure = async (events, count) => {
    const info = await call('start', { latency: PICKUP_LATENCY });
    const handed = new Map();
    let ready;
    const isReady = new Promise((r) => (ready = r));
    const job = child({ job: 'pickup', info, events, pollInterval: POLL }, (m) => {
      if (m.type === 'ready') ready();
      if (m.type === 'handed') handed.set(m.uuid, m.at);
    });
    await isReady;
    const created = [];
    for (let i = 0; i < count; i++) {
      // Random gaps, so creation times fall anywhere in the poll interval.
      await new Promise((r) => setTimeout(r, events ? 100 + Math.random() * 300 : Math.random() * 2 * POLL / count * 2));
      created.push(await call('createOne', { i }));
    }
    const deadline = Date.now() + POLL * 2 + 5000;
    while (created.some((c) => !handed.has(c.uuid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    job.process.send('stop');
    await job.result;
    const lat = created.filter((c) => handed.has(c.uuid)).map((c) => handed.get(c.uuid) - c.at);
    return { events, n: lat.length, missing: created.length - lat.length, p50: median(lat), p95: quantile(lat, 0.95), max: Math.max(...lat) };
  };
  const on = await measure(true, S.pickups.on);
  const off = await measure(false, S.pickups.off);
  out(`## (d) Pickup latency: container creation to hand-over (poll interval ${POLL / 1000} s, ${PICKUP_LATENCY} ms added latency)`);
  out();
  out('| events | containers | p50 (ms) | p95 (ms) | max (ms) | target |');
  out('|---|---|---|---|---|---|');
  for (const r of [on, off]) {
    out(`| ${r.events ? 'on' : 'off'} | ${r.n}${r.missing ? ` (${r.missing} not picked up)` : ''} | ${fmt(r.p50, 0)} | ${fmt(r.p95, 0)} | ${fmt(r.max, 0)} | ${r.events ? 'p50 ≤ 50, p95 ≤ 250' : 'about half the interval'} |`);
  }
  out();
  return { on, off };
}

try {
  const today = new Date().toISOString().slice(0, 10);
  out(`# arvados-dispatch benchmarks${FULL ? '' : ' (quick sizes)'}`);
  out();
  out(`Machine: ${hostname()}, ${cpus()[0]?.model ?? 'unknown CPU'} x ${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${today}.`);
  out('`npm run bench` (quick sizes) or `BENCH_SIZE=full npm run bench`; the machine was shared with other work, so CPU');
  out('figures are noisy: compare the ratios, which are measured in the same run.');
  out();
  if (SECTIONS.has('a')) await steadySection();
  if (SECTIONS.has('b')) await lockSection();
  if (SECTIONS.has('c')) await memorySection();
  if (SECTIONS.has('d')) await pickupSection();
  if (FULL && SECTIONS.size === 4) {
    // Keep the sections other benchmarks (e.g. bench/schemas.mjs) wrote.
    const path = new URL('./results.md', import.meta.url);
    let kept = '';
    try {
      const old = readFileSync(path, 'utf8');
      const mine = new Set(lines.filter((l) => l.startsWith('## ')).map((l) => l.slice(3).split(':')[0].split(' (')[0]));
      kept = old
        .split(/\n(?=## )/)
        .slice(1)
        .filter((sec) => sec.startsWith('## ') && !mine.has(sec.slice(3).split('\n')[0].split(':')[0].split(' (')[0]) && !/^## \((a|b|c|d)\)|^## (Dispatch throughput|Steady state)/.test(sec))
        .map((sec) => `\n${sec.trimEnd()}\n`)
        .join('');
    } catch {
      kept = '';
    }
    writeFileSync(path, lines.join('\n') + '\n' + kept);
  }
} finally {
  server.disconnect();
}
