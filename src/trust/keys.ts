/**
 * EC private keys in the two PEM forms the mesh meets: SEC1 (`EC PRIVATE KEY`, what Consul's
 * agent hands out) and PKCS#8 (`PRIVATE KEY`, what WebCrypto speaks).
 * @module
 */
import { decodePem, encodePem } from "./pem.ts";

const OID_EC_PUBLIC_KEY = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const CURVES: Record<string, number[]> = {
  "P-256": [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
  "P-384": [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
  "P-521": [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
};

function len(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

function tlv(tag: number, content: ArrayLike<number>): number[] {
  return [tag, ...len(content.length), ...Array.from(content)];
}

interface Tlv {
  tag: number;
  content: Uint8Array;
  end: number;
}

function readTlv(b: Uint8Array, at: number): Tlv {
  // A key comes from the agent over the network: every length is checked against the bytes.
  if (at + 2 > b.length) throw new TypeError("truncated DER");
  const tag = b[at]!;
  let length = b[at + 1]!;
  let offset = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count > 3 || offset + count > b.length) throw new TypeError("truncated DER");
    length = 0;
    for (let i = 0; i < count; i++) length = (length << 8) | b[offset + i]!;
    offset += count;
  }
  if (offset + length > b.length) throw new TypeError("truncated DER");
  return { tag, content: b.subarray(offset, offset + length), end: offset + length };
}

function children(b: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < b.length;) {
    const t = readTlv(b, at);
    out.push(t);
    at = t.end;
  }
  return out;
}

function curveOf(oid: Uint8Array): string {
  for (const [name, bytes] of Object.entries(CURVES)) {
    if (bytes.length - 2 === oid.length && bytes.slice(2).every((v, i) => v === oid[i])) {
      return name;
    }
  }
  throw new TypeError("unsupported EC curve");
}

/**
 * Exports a WebCrypto EC private key as a SEC1 `EC PRIVATE KEY` PEM with the curve named, the
 * form Go's `x509.ParseECPrivateKey` (and so Consul) reads.
 *
 * @example
 * ```ts
 * import { exportSec1Pem } from "./keys.ts";
 * const { privateKey } = await crypto.subtle.generateKey(
 *   { name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
 * console.log((await exportSec1Pem(privateKey)).split("\n")[0]); // -----BEGIN EC PRIVATE KEY-----
 * ```
 */
export async function exportSec1Pem(key: CryptoKey): Promise<string> {
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const curve = CURVES[jwk.crv ?? ""];
  if (!curve || !jwk.d || !jwk.x || !jwk.y) throw new TypeError("not an exportable EC key");
  const d = Uint8Array.fromBase64(jwk.d, { alphabet: "base64url" });
  const x = Uint8Array.fromBase64(jwk.x, { alphabet: "base64url" });
  const y = Uint8Array.fromBase64(jwk.y, { alphabet: "base64url" });
  const der = tlv(0x30, [
    ...tlv(0x02, [1]),
    ...tlv(0x04, d),
    ...tlv(0xa0, curve),
    ...tlv(0xa1, tlv(0x03, [0, 4, ...x, ...y])),
  ]);
  return encodePem("EC PRIVATE KEY", new Uint8Array(der));
}

/**
 * Imports an EC private key from a SEC1 or PKCS#8 PEM as a WebCrypto ECDSA signing key.
 *
 * @example
 * ```ts
 * import { ConnectCA } from "@meshgate/meshgate/devagent";
 * import { importEcPrivateKeyPem } from "./keys.ts";
 *
 * const ca = await ConnectCA.create(); // a test CA
 * const { cert: leaf } = await ca.signLeaf("web"); // a leaf as the agent serves it
 * const { key, curve } = await importEcPrivateKeyPem(leaf.PrivateKeyPEM);
 * console.log(curve, key.usages); // P-256 [ "sign" ]
 * ```
 * @throws {TypeError} when the PEM holds no supported EC key
 */
export async function importEcPrivateKeyPem(
  pem: string,
): Promise<{ key: CryptoKey; curve: string }> {
  const block = decodePem(pem).find((b) =>
    b.label === "EC PRIVATE KEY" || b.label === "PRIVATE KEY"
  );
  if (!block) throw new TypeError("no EC PRIVATE KEY or PRIVATE KEY block");
  let pkcs8: Uint8Array<ArrayBuffer>;
  let curve: string;
  if (block.label === "EC PRIVATE KEY") {
    const seq = children(readTlv(block.der, 0).content);
    const params = seq.find((t) => t.tag === 0xa0);
    if (!params) throw new TypeError("SEC1 key does not name its curve");
    curve = curveOf(readTlv(params.content, 0).content);
    pkcs8 = new Uint8Array(tlv(0x30, [
      ...tlv(0x02, [0]),
      ...tlv(0x30, [...OID_EC_PUBLIC_KEY, ...CURVES[curve]!]),
      ...tlv(0x04, block.der),
    ]));
  } else {
    // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier { id-ecPublicKey, curve }, … }
    const alg = children(readTlv(block.der, 0).content)[1];
    const params = alg?.tag === 0x30 ? children(alg.content)[1] : undefined;
    if (!params) throw new TypeError("PKCS#8 key has no algorithm parameters (not an EC key)");
    curve = curveOf(params.content);
    pkcs8 = block.der;
  }
  const key = await crypto.subtle.importKey(
    "pkcs8",
    pkcs8,
    { name: "ECDSA", namedCurve: curve },
    true,
    ["sign"],
  );
  return { key, curve };
}
