// FakeArvados in its own process for the benchmarks, so that the server's CPU
// time does not land on the dispatcher's event loop. Driven over IPC.
import { FakeArvados } from '../dist/testing/index.js';

/**
 * A container as a workflow runner's container looks through the API:
 * command, mounts (collections, tmp, JSON inputs), environment and runtime
 * constraints (the server fills in the defaults), a priority of the
 * `cr.priority * 2^50 - created_ms` form. About 1.5 KB of JSON.
 */
function realistic(i, extra) {
  const pdh = (n) => `${(0xabcdef01 + n).toString(16).padStart(8, '0')}${'0'.repeat(24)}+${1000 + n}`;
  return {
    command: [
      'arvados-cwl-runner', '--local', '--api=containers', '--no-log-timestamps', '--disable-validate',
      '--disable-color', '--eval-timeout=20', '--thread-count=0', '--enable-reuse', '--collection-cache-size=256',
      `--output-name=Output from sample-${i}`, '--on-error=continue', '/var/lib/cwl/workflow.json#main', '/var/lib/cwl/cwl.input.json',
    ],
    container_image: pdh(7),
    cwd: '/var/spool/cwl',
    output_path: '/var/spool/cwl',
    environment: { HOME: '/var/spool/cwl', TMPDIR: '/tmp', SAMPLE: `sample-${i}` },
    mounts: {
      '/keep/reference': { kind: 'collection', portable_data_hash: pdh(1) },
      '/tmp': { kind: 'tmp', capacity: 1073741824 },
      '/var/spool/cwl': { kind: 'tmp', capacity: 1073741824 },
      '/var/lib/cwl/cwl.input.json': { kind: 'json', content: { reads: { class: 'File', location: `keep:${pdh(i)}/sample-${i}.fastq.gz` } } },
      '/var/lib/cwl/workflow.json': { kind: 'collection', portable_data_hash: pdh(2), path: 'workflow.json' },
      stdout: { kind: 'file', path: '/var/spool/cwl/cwl.output.json' },
    },
    runtime_constraints: { API: true, ram: 1073741824, vcpus: 1, keep_cache_ram: 268435456 },
    scheduling_parameters: { partitions: [] },
    output_glob: [],
    priority: 500 * 2 ** 50 - (1_764_000_000_000 + i),
    ...extra,
  };
}

let fake;
let touchList;
let touchNext = 0;
const handlers = {
  async start({ latency = 0, maxItemsPerResponse, tls = true }) {
    await fake?.stop();
    fake = await new FakeArvados({ latency, maxItemsPerResponse, tls, recordRequests: false }).start();
    touchList = undefined;
    return { env: fake.env(), caCert: fake.caCert, rootTokenUuid: fake.rootToken.uuid };
  },
  addQueued({ n }) {
    fake.addContainers(n, (i) => realistic(i, {}));
  },
  addMine({ n, tokenUuid }) {
    fake.addContainers(n, (i) => realistic(i, { state: 'Running', locked_by_uuid: tokenUuid }));
  },
  /** Adds one Queued container; answers its uuid and the time it was created (ms since the epoch). */
  createOne({ i }) {
    const c = fake.addContainer(realistic(i, {}));
    return { uuid: c.uuid, at: Date.now() };
  },
  /** Changes the priority of `n` of the containers locked by `tokenUuid` (a new modified_at each), in turn. */
  touch({ n, tokenUuid }) {
    if (!n) return 0;
    touchList ??= fake.containers().filter((c) => c.locked_by_uuid === tokenUuid).map((c) => c.uuid);
    for (let i = 0; i < n && touchList.length > 0; i++) {
      const uuid = touchList[touchNext % touchList.length];
      // (Real priorities are beyond 2^53, where +1 changes nothing.)
      fake.setPriority(uuid, 1 + (touchNext++ % 997));
    }
    return n;
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
