/**
 * Feeds the metrics and the health monitor from the events of the
 * Dispatcher and of the runner, so neither of them knows about Prometheus.
 *
 * @module
 */
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import type { Runner } from '../dispatcher/runner.js';
import type { HealthMonitor } from './health.js';
import type { DispatchMetrics, LockResult, QueueView } from './metrics.js';

/** The scrape-time queue view of a Dispatcher (its entries() by state), and of its runner's scheduler if it has one. */
export function dispatcherQueueView(d: Dispatcher, runner: Runner | undefined = d.runner): QueueView {
  const scheduler = runner?.status?.scheduler !== undefined;
  return {
    atQuota: () => d.status.atQuota || (runner?.status?.atQuota ?? false),
    ...(scheduler ? { queueStatusAgeMs: () => runner?.status?.queueAgeMs } : {}),
    queueEntries() {
      const out = { Queued: 0, Locked: 0, Running: 0 };
      for (const e of d.entries()) {
        const s = e.container.state;
        if (s === 'Queued' || s === 'Locked' || s === 'Running') out[s]++;
      }
      return out;
    },
    running() {
      let n = 0;
      for (const e of d.entries()) if (e.container.state === 'Running') n++;
      return n;
    },
    oldestWaiting() {
      let oldest: number | undefined;
      for (const e of d.entries()) {
        if (e.container.state !== 'Queued' && e.container.state !== 'Locked') continue;
        const t = Date.parse(e.container.created_at ?? '');
        if (Number.isFinite(t) && (oldest === undefined || t < oldest)) oldest = t;
      }
      return oldest;
    },
  };
}

/**
 * Wires a Dispatcher and its client: API health from each poll cycle,
 * `at_quota` while `maxJobs` or the runner's capacity holds containers back,
 * API request durations and 503s, lock results, finished containers, and
 * the scrape-time queue gauges.
 */
export function observeDispatcher(metrics: DispatchMetrics, health: HealthMonitor, d: Dispatcher): void {
  const runner = d.runner;
  metrics.setView(dispatcherQueueView(d, runner));
  d.on('cycle', (st) => {
    if (st.healthy) {
      health.ok('api');
      metrics.markQueueStatus();
    } else {
      health.failed('api', 'queries of the last poll failed or returned malformed records');
    }
  });
  d.client.on('request', (e) => {
    if (e.errorClass === 'aborted') return;
    metrics.recordApiRequest(e.method, e.durationMs, e.status);
    if (e.path === 'containers/{uuid}/lock') metrics.recordLock(lockResult(e.status));
  });
  // A runner with a scheduler reports why jobs finished from its accounting.
  if (runner?.events && runner.status?.scheduler !== undefined) {
    observeRunner(metrics, health, runner);
    return;
  }
  // Without a scheduler's accounting, the reason is the final state the
  // dispatcher saw: from the updates stream, or from the record read when the
  // runner settled first (crunch-run often exits before the next poll).
  d.on('finished', (_uuid, state) => metrics.recordFinished(state.toLowerCase()));
}

/**
 * Wires a runner with a scheduler, through the {@link Runner} interface only
 * (its `status` and `events`): scheduler command durations and errors, the
 * scheduler's health (its queue query), submissions, vanished jobs, and
 * why jobs ended (`out_of_memory`, `timeout`, ... from the accounting).
 */
export function observeRunner(metrics: DispatchMetrics, health: HealthMonitor, runner: Runner): void {
  const events = runner.events;
  if (!events) return;
  events.on('command', (rec) => {
    metrics.recordCommand(rec.command, rec.result, rec.durationMs, rec.errorClass);
    // The last queue query decides; a failure run keeps its start time.
    if (runner.status?.queueHealthy !== false) health.ok('scheduler');
    else if (rec.result === 'error') health.failed('scheduler', `${runner.status?.scheduler ?? 'scheduler'}: ${rec.command} failed (${rec.errorClass ?? 'unknown'})`);
  });
  events.on('submitted', (_uuid, result) => metrics.recordSubmission(result));
  events.on('vanished', (_uuid, resolution) => metrics.recordVanished(resolution));
  events.on('finished', (_uuid, kind) => metrics.recordFinished(kind.toLowerCase()));
}

/**
 * A lock answer's class: 2xx ok; 403/409/422 a conflict (another dispatcher
 * has it, or its state or priority changed), which is normal on a busy
 * cluster; anything else (no answer, 5xx) an error.
 */
function lockResult(status: number | undefined): LockResult {
  if (status !== undefined && status >= 200 && status < 300) return 'ok';
  if (status === 403 || status === 409 || status === 422) return 'conflict';
  return 'error';
}
