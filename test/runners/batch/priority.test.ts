import { describe, expect, it } from '@jest/globals';
import type { QueueJob } from '../../../src/runners/batch/adapter.js';
import type { NiceJob, ReniceCandidate } from '../../../src/runners/batch/priority.js';
import { DEFAULT_PRIORITY_SPREAD, planNice, timestampNanos, wantNice, wantPriority, wantedOrder } from '../../../src/runners/batch/priority.js';
import { parseSqueue } from '../../../src/runners/batch/slurm/adapter.js';

/** The old one-call plan: order by wanted priority, then the nice-gap plan. */
function reniceActions(candidates: ReniceCandidate[], spread: number): Array<{ name: string; nice: number }> {
  return planNice(wantedOrder(candidates), spread).map((c) => ({ name: c.job.name, nice: c.value }));
}

function job(name: string, priority: number, nice: number): QueueJob {
  return { jobId: '1', name, priority, nice, state: 'pending', rawState: 'PENDING', pendingReason: 'Resources' };
}

const d = DEFAULT_PRIORITY_SPREAD;

// PrioritySuite.TestReniceCorrect
const cases: Array<{ name: string; spread: number; jobs: NiceJob[]; want: number[] }> = [
  { name: 'empty', spread: 0, jobs: [], want: [] },
  { name: 'one job', spread: 10, jobs: [{ priority: 4294000111, nice: 10000 }], want: [0] },
  {
    name: 'four equal jobs',
    spread: 10,
    jobs: Array.from({ length: 4 }, () => ({ priority: 4294000111, nice: 10000 })),
    want: [0, 10, 20, 30],
  },
  {
    name: 'smaller spread than necessary, but correctly ordered: leave nice alone',
    spread: 10,
    jobs: [
      { priority: 4294000113, nice: 0 },
      { priority: 4294000112, nice: 1 },
      { priority: 4294000111, nice: 99 },
    ],
    want: [0, 1, 99],
  },
  {
    name: 'larger spread than necessary, but less than 10x: leave nice alone',
    spread: 10,
    jobs: [
      { priority: 4294000144, nice: 0 },
      { priority: 4294000122, nice: 20 },
      { priority: 4294000111, nice: 30 },
    ],
    want: [0, 20, 30],
  },
  {
    name: 'more than 10x spread: reduce nice to achieve spread=10',
    spread: 10,
    jobs: [
      { priority: 4000, nice: 0 },
      { priority: 3000, nice: 999 },
      { priority: 2000, nice: 1998 },
    ],
    want: [0, 9, 18],
  },
  {
    name: 'more than 10x spread, but spread=10 is impossible without negative nice',
    spread: 10,
    jobs: [
      { priority: 4000, nice: 0 },
      { priority: 3000, nice: 500 },
      { priority: 2000, nice: 2000 },
    ],
    want: [0, 0, 510],
  },
  {
    name: 'default spread, needs reorder',
    spread: 0,
    jobs: [
      { priority: 4000, nice: 0 },
      { priority: 5000, nice: 0 },
      { priority: 6000, nice: 0 },
    ],
    want: [0, 1000 + d, 2000 + d * 2],
  },
  {
    name: 'minimum spread',
    spread: 1,
    jobs: [
      { priority: 4000, nice: 0 },
      { priority: 5000, nice: 0 },
      { priority: 6000, nice: 0 },
      { priority: 3000, nice: 0 },
    ],
    want: [0, 1001, 2002, 0],
  },
];

describe('wantNice (PrioritySuite)', () => {
  it.each(cases)('$name', ({ spread, jobs, want }) => {
    expect(wantNice(jobs, spread)).toEqual(want);
  });

  it.each(cases.filter((c) => c.jobs.length > 0))('is idempotent: $name', ({ spread, jobs, want }) => {
    // After renicing, the priority moves by the change in nice; asking again
    // must recommend the same values.
    const updated = jobs.map((job, i) => ({ nice: want[i], priority: job.priority + job.nice - want[i] }));
    expect(wantNice(updated, spread)).toEqual(want);
  });

  it('does not mutate its input', () => {
    const jobs = [
      { priority: 4000, nice: 0 },
      { priority: 5000, nice: 0 },
    ];
    wantNice(jobs, 1);
    expect(jobs).toEqual([
      { priority: 4000, nice: 0 },
      { priority: 5000, nice: 0 },
    ]);
  });

  it('TestReniceChurn: bounded renicing as the head of a long queue is popped', () => {
    const spread = 10;
    const jobs = Array.from({ length: 1000 }, (_, i) => ({ priority: 4294000000 - i, nice: 10000 }));
    let adjustments = 0;
    for (let queue = jobs; queue.length > 0; queue = queue.slice(1)) {
      const renice = wantNice(queue, spread);
      queue.forEach((job, i) => {
        if (renice[i] === job.nice) return;
        job.priority += job.nice - renice[i];
        job.nice = renice[i];
        adjustments++;
      });
    }
    expect(adjustments).toBeLessThan((jobs.length * jobs.length) / 10);
  });
});

describe('wantedOrder + planNice (SqueueSuite.TestReniceAll)', () => {
  const uuids = ['zzzzz-dz642-fake0fake0fake0', 'zzzzz-dz642-fake1fake1fake1', 'zzzzz-dz642-fake2fake2fake2'];
  const tests: Array<{ spread: number; squeue: string; want: Record<string, number>; expect: Array<[string, number]> }> =
    [
      {
        spread: 1,
        squeue: `1|${uuids[0]}|10000|4294000000|PENDING||Resources\n`,
        want: { [uuids[0]]: 1 },
        expect: [[uuids[0], 0]],
      },
      {
        // fake0 priority is too high
        spread: 1,
        squeue: `1|${uuids[0]}|10000|4294000777|PENDING||Resources\n1|${uuids[1]}|10000|4294000444|PENDING||Resources\n`,
        want: { [uuids[0]]: 1, [uuids[1]]: 999 },
        expect: [
          [uuids[1], 0],
          [uuids[0], 334],
        ],
      },
      {
        // specify spread
        spread: 100,
        squeue: `1|${uuids[0]}|10000|4294000777|PENDING||Resources\n1|${uuids[1]}|10000|4294000444|PENDING||Resources\n`,
        want: { [uuids[0]]: 1, [uuids[1]]: 999 },
        expect: [
          [uuids[1], 0],
          [uuids[0], 433],
        ],
      },
      {
        // ignore fake2: Arvados never said what it wants for it
        spread: 1,
        squeue:
          `1|${uuids[0]}|10000|4294000000|PENDING||Resources\n` +
          `1|${uuids[1]}|10000|4294000111|PENDING||Resources\n` +
          `1|${uuids[2]}|10000|4294000222|PENDING||Resources\n`,
        want: { [uuids[0]]: 999, [uuids[1]]: 1 },
        expect: [
          [uuids[0], 0],
          [uuids[1], 112],
        ],
      },
    ];

  it.each(tests)('spread $spread, want $want', ({ spread, squeue, want, expect: expected }) => {
    const candidates: ReniceCandidate[] = parseSqueue(squeue).map((j) => ({ job: j, want: BigInt(want[j.name] ?? 0) }));
    expect(reniceActions(candidates, spread).map((a) => [a.name, a.nice])).toEqual(expected);
  });

  it('breaks ties by name, descending, and accepts bigint priorities', () => {
    const jobs: ReniceCandidate[] = [
      { job: job('a', 100, 10000), want: 5n },
      { job: job('b', 100, 10000), want: 5n },
      { job: job('c', 100, 10000), want: 1n << 60n },
    ];
    expect(reniceActions(jobs, 10)).toEqual([
      { name: 'c', nice: 0 },
      { name: 'b', nice: 10 },
      { name: 'a', nice: 20 },
    ]);
  });

  it('returns nothing once the queue is in order', () => {
    const jobs: ReniceCandidate[] = [
      { job: job('x', 50, 0), want: 2n },
      { job: job('y', 40, 0), want: 1n },
    ];
    expect(reniceActions(jobs, 10)).toEqual([]);
  });
});

describe('wantPriority', () => {
  // Arvados' "queued" fixture: priority 1, created_at 2016-01-11 11:11:11.111111111Z.
  const created = '2016-01-11T11:11:11.111111111Z';

  it('spreads user-assigned priorities by creation time (p<<50 - ns>>14)', () => {
    expect(wantPriority({ priority: 1, created_at: created })).toBe(1037245691076565n);
    expect(wantPriority({ priority: 1000, created_at: created })).toBe(1125811252626857941n);
  });

  it('puts older containers first among equals, to 2^14 ns resolution', () => {
    const older = wantPriority({ priority: 500, created_at: '2016-01-11T11:11:11.111111111Z' });
    const newer = wantPriority({ priority: 500, created_at: '2016-01-11T11:11:11.111127495Z' });
    expect(older - newer).toBe(1n);
    expect(wantPriority({ priority: 1, created_at: '2016-01-11T11:11:11.111127495Z' })).toBe(
      1037245691076564n,
    );
    // A higher priority beats any age.
    expect(wantPriority({ priority: 2, created_at: '2030-01-01T00:00:00Z' })).toBeGreaterThan(
      wantPriority({ priority: 1, created_at: '1970-01-01T00:00:00Z' }),
    );
  });

  it('uses priorities above 1000 as they are', () => {
    expect(wantPriority({ priority: 1001, created_at: created })).toBe(1001n);
    expect(wantPriority({ priority: 2 ** 60, created_at: created })).toBe(1n << 60n);
  });

  it('treats a missing created_at as the epoch', () => {
    expect(wantPriority({ priority: 3 })).toBe(3n << 50n);
  });

  it('returns 0n (leave the job alone) for a priority that is missing or not a number, never throwing', () => {
    for (const priority of [undefined, null, 'high', Number.NaN, Infinity, {}]) {
      expect(wantPriority({ priority: priority as unknown as number, created_at: created })).toBe(0n);
    }
  });
});

describe('timestampNanos', () => {
  it('keeps every digit of the fraction', () => {
    expect(timestampNanos('2016-01-11T11:11:11.111111111Z')).toBe(1452510671111111111n);
    expect(timestampNanos('2016-01-11T11:11:11Z')).toBe(1452510671000000000n);
    expect(timestampNanos('2016-01-11T11:11:11.5Z')).toBe(1452510671500000000n);
    expect(timestampNanos('2016-01-11T12:11:11.5+01:00')).toBe(1452510671500000000n);
  });

  it('returns undefined for what it cannot parse', () => {
    expect(timestampNanos(undefined)).toBeUndefined();
    expect(timestampNanos(null)).toBeUndefined();
    expect(timestampNanos('yesterday')).toBeUndefined();
  });
});
