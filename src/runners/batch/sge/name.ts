/**
 * Grid Engine job names for containers.
 *
 * @module
 */

/**
 * Grid Engine refuses job names that start with a digit ("is not a valid
 * object name"), and Arvados cluster ids may: such a container's job is
 * named `arv-<uuid>`, which the two functions here
 * translate both ways.
 */
const DIGIT_PREFIX = 'arv-';

/** The Grid Engine job name for a container. */
export function sgeJobName(uuid: string): string {
  return /^\d/.test(uuid) ? `${DIGIT_PREFIX}${uuid}` : uuid;
}

/** The container UUID a job name stands for (the name itself unless translated). */
export function containerOfJob(name: string): string {
  return name.startsWith(DIGIT_PREFIX) && /^\d/.test(name.slice(DIGIT_PREFIX.length)) ? name.slice(DIGIT_PREFIX.length) : name;
}

