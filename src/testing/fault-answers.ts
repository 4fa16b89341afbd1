/**
 * How each injected fault is served. Some kinds answer instead of the API
 * (the request is never processed); the others alter or withhold the
 * answer of a request that was processed, so its change did happen.
 *
 * @module
 */
import type * as http from 'node:http';
import { ApiError } from './errors.js';
import type { PickedFault } from './faults.js';
import { BAD_IDENTITIES, ENDLESS_ITEM, corruptAnswer, echoPage } from './hostile.js';
import type { Reply } from './reply.js';

/** Chooses among `n` variants or positions, with the fault rule's PRNG. */
export type Pick = (n: number) => number;

/**
 * Serves `picked` if its kind answers before the request is processed
 * (500, 502, 503, html, echo-headers, errors-200, bad-identity, endless);
 * true when it did, false when the request must be processed.
 */
export function answerBeforeProcessing(picked: PickedFault, reply: Reply, pick: Pick): boolean {
  const fault = picked.kind;
  const { req, requestId } = reply;
  if (fault === 500) {
    reply.error(new ApiError(500, '#<PG::ConnectionBad: injected fault>'));
    return true;
  }
  if (fault === 502 || fault === 503) {
    const headers = { 'Content-Type': 'application/json', 'Retry-After': String(picked.rule.opts.retryAfter ?? 0), 'X-Request-Id': requestId };
    reply.raw(fault, headers, JSON.stringify({ errors: [`${fault === 502 ? 'Bad Gateway' : 'Service Unavailable'} (injected fault)`] }));
    return true;
  }
  if (fault === 'html') {
    reply.raw(502, { 'Content-Type': 'text/html' }, '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n');
    return true;
  }
  if (fault === 'echo-headers') {
    reply.raw(502, { 'Content-Type': 'text/html' }, echoPage(req.method ?? 'GET', req.url ?? '/', req.rawHeaders));
    return true;
  }
  if (fault === 'errors-200') {
    reply.send(200, { errors: [`#<ActiveRecord::StatementInvalid: injected fault> (${requestId})`] });
    return true;
  }
  if (fault === 'bad-identity') {
    const identity = BAD_IDENTITIES[pick(BAD_IDENTITIES.length)];
    reply.record.faultDetail = JSON.stringify(identity);
    reply.send(200, identity === null ? 'null' : identity, { 'Content-Type': 'application/json; charset=utf-8' });
    return true;
  }
  if (fault === 'endless') {
    reply.record.status = 200;
    endless(reply.res, requestId);
    return true;
  }
  return false;
}

/**
 * Sends the processed answer (`status`, `payload`), or what `fault` makes
 * of it: no answer at all (reset, hang), a corrupted one (null-item,
 * malformed-items, hostile-uuid, on a 200 only), or a truncated one.
 */
export function answerAfterProcessing(fault: PickedFault['kind'] | undefined, status: number, payload: unknown, reply: Reply, pick: Pick): void {
  if (fault === 'reset') {
    reply.record.status = 0;
    reply.req.socket.destroy();
    return;
  }
  if (fault === 'hang') {
    reply.record.status = 0;
    return; // the socket stays open until the client gives up or stop()
  }
  if ((fault === 'null-item' || fault === 'malformed-items' || fault === 'hostile-uuid') && status === 200) {
    const bad = corruptAnswer(fault, payload, pick);
    reply.record.faultDetail = bad.detail;
    reply.send(status, JSON.stringify(bad.payload), { 'Content-Type': 'application/json; charset=utf-8' });
    return;
  }
  if (fault === 'truncated') {
    const text = JSON.stringify(payload);
    reply.raw(status, { 'Content-Type': 'application/json', 'X-Request-Id': reply.requestId }, text.slice(0, Math.max(1, Math.floor(text.length / 2))));
    return;
  }
  reply.send(status, payload);
}

/**
 * A 200 JSON body that never ends: items written as fast as the client reads
 * them (waiting for `drain`, so the fake's memory stays flat) until the
 * client hangs up or the server stops.
 */
function endless(res: http.ServerResponse, requestId: string): void {
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'X-Request-Id': requestId });
  res.write('{"kind":"arvados#containerList","offset":0,"limit":1000,"items":[');
  const block = ENDLESS_ITEM.repeat(256);
  const pump = (): void => {
    while (!res.destroyed && !res.writableEnded) {
      if (!res.write(block)) {
        res.once('drain', pump);
        return;
      }
    }
  };
  pump();
}
