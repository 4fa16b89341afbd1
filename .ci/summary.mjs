// Sums Jest's JSON reports of the two runs (.ci/run): per tier the test
// files, tests passed and failed, and the summed time of its files, then the
// single line "N passed, N failed" over both.
// node .ci/summary.mjs <report of npm test> <report of npm run test:system>
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SYSTEM, UNIT } from '../jest.config.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const tierOf = (file) => {
  const rel = relative(ROOT, file);
  if (UNIT.includes(rel)) return 'unit';
  if (SYSTEM.some((p) => (p.endsWith('/') ? rel.startsWith(p) : rel === p))) return 'system';
  return 'integration';
};

const tiers = new Map(['unit', 'integration', 'system'].map((t) => [t, { files: 0, passed: 0, failed: 0, skipped: 0, ms: 0 }]));
let passed = 0;
let failed = 0;
for (const report of process.argv.slice(2)) {
  if (!existsSync(report)) continue;
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  for (const file of r.testResults) {
    const t = tiers.get(tierOf(file.name));
    t.files++;
    t.ms += (file.endTime ?? 0) - (file.startTime ?? 0);
    for (const a of file.assertionResults) {
      if (a.status === 'passed') t.passed++;
      else if (a.status === 'failed') t.failed++;
      else t.skipped++;
    }
    // A file that failed to load counts as one failed test.
    if (file.status === 'failed' && file.assertionResults.length === 0) t.failed++;
  }
}
for (const [name, t] of tiers) {
  console.log(`${name.padEnd(12)} ${String(t.files).padStart(3)} files  ${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped  (${(t.ms / 1000).toFixed(1)}s summed over files)`);
}
console.log(`${passed} passed, ${failed} failed`);
