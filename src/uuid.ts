/**
 * UUID checks. Every UUID that goes into a URL path or a command line is
 * checked here first, so API data can never smuggle `../`, `?` or a shell
 * metacharacter into either.
 *
 * @module
 */

const ANY_UUID = /^[0-9a-z]{5}-[0-9a-z]{5}-[0-9a-z]{15}$/;
const CONTAINER_UUID = /^[0-9a-z]{5}-dz642-[0-9a-z]{15}$/;

/** True for any Arvados object UUID (`zzzzz-xxxxx-0123456789abcde`). */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && ANY_UUID.test(value);
}

/** True for a container UUID (`zzzzz-dz642-0123456789abcde`). */
export function isContainerUuid(value: unknown): value is string {
  return typeof value === 'string' && CONTAINER_UUID.test(value);
}

/** Throws a `TypeError` unless `value` is a container UUID. */
export function assertContainerUuid(value: unknown): asserts value is string {
  if (!isContainerUuid(value)) {
    throw new TypeError(`not a container UUID: ${JSON.stringify(value)}`);
  }
}
