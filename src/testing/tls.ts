/**
 * A self-signed certificate for 127.0.0.1 / localhost / ::1, made with
 * node:crypto alone (Node has no X.509 builder, so the few DER structures are
 * encoded by hand). Each FakeArvados gets a fresh key, so a client only
 * trusts it by turning verification off (`ARVADOS_API_HOST_INSECURE`) or by
 * adding its `caCert` to the trusted CAs, as with a real private CA.
 *
 * @module
 */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
}

const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out = [40 * parts[0] + parts[1]];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = p >> 7; v > 0; v >>= 7) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

function utcTime(d: Date): Buffer {
  const p = (n: number): string => String(n).padStart(2, '0');
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return tlv(0x17, Buffer.from(s, 'ascii'));
}

/** A PEM certificate and its PEM private key. */
export interface SelfSignedCert {
  cert: string;
  key: string;
}

/**
 * Makes an ECDSA P-256 certificate valid from an hour ago for `days` days,
 * with subject alternative names 127.0.0.1, ::1 and localhost.
 */
export function selfSignedCert(commonName = 'arvados-dispatch FakeArvados', days = 30): SelfSignedCert {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const serial = randomBytes(16);
  // A positive INTEGER in minimal DER form: top bit clear (else negative) and
  // the first byte non-zero (else a padding byte OpenSSL rejects).
  serial[0] = (serial[0] & 0x7f) | 0x40;
  const ecdsaWithSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
  const now = Date.now();
  const validity = seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + days * 86400_000)));
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const ipv6Loopback = Buffer.alloc(16);
  ipv6Loopback[15] = 1;
  const san = seq(
    tlv(0x87, Buffer.from([127, 0, 0, 1])),
    tlv(0x87, ipv6Loopback),
    tlv(0x82, Buffer.from('localhost', 'ascii')),
  );
  const TRUE = Buffer.from([0x01, 0x01, 0xff]);
  const extensions = tlv(
    0xa3,
    seq(
      seq(oid('2.5.29.17'), tlv(0x04, san)),
      // A self-signed certificate acts as its own CA when a client trusts it.
      seq(oid('2.5.29.19'), TRUE, tlv(0x04, seq(TRUE))),
      // digitalSignature + keyCertSign
      seq(oid('2.5.29.15'), TRUE, tlv(0x04, tlv(0x03, Buffer.from([0x02, 0x84])))),
    ),
  );
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))), // v3
    tlv(0x02, serial),
    ecdsaWithSha256,
    name,
    validity,
    name,
    spki,
    extensions,
  );
  const signature = sign('sha256', tbs, privateKey);
  const der = seq(tbs, ecdsaWithSha256, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return {
    cert: `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`,
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}
