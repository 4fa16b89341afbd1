/**
 * The metrics every Arvados Go service exports about its build and its
 * configuration, under the same names, so `arvados-server check` and
 * dashboards that compare them across hosts see this dispatcher too:
 * `arvados_version_running{version}` (always 1), and, when a config file
 * was read, `arvados_config_load_timestamp_seconds` (when it was read) and
 * `arvados_config_source_timestamp_seconds{sha256}` (the file's mtime,
 * labelled with the SHA-256 of its content).
 *
 * @module
 */
import { Gauge, type Registry } from 'prom-client';

/** What was read of a config file, for its metrics. */
export interface ConfigSourceInfo {
  /** Hex SHA-256 of the file's bytes. */
  sha256: string;
  /** The file's modification time, ms since the epoch. */
  mtimeMs: number;
  /** When it was read, ms since the epoch. */
  loadedAtMs: number;
}

/** Registers the version gauge, and the config gauges when `config` is given. */
export function registerVersionMetrics(registry: Registry, version: string, config?: ConfigSourceInfo): void {
  const registers = [registry];
  new Gauge({ name: 'arvados_version_running', help: 'Indicated version is running.', labelNames: ['version'], registers }).set({ version }, 1);
  if (!config) return;
  new Gauge({ name: 'arvados_config_load_timestamp_seconds', help: 'Time when config file was loaded.', registers }).set(config.loadedAtMs / 1000);
  new Gauge({ name: 'arvados_config_source_timestamp_seconds', help: 'Timestamp of config file when it was loaded.', labelNames: ['sha256'], registers }).set(
    { sha256: config.sha256 },
    config.mtimeMs / 1000,
  );
}
