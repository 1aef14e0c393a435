// EC private keys in SEC1 and PKCS#8 PEM: export, import on every curve, and the inputs that
// must be refused with a TypeError that says why (a key comes from the agent, over the network).
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { exportSec1Pem, importEcPrivateKeyPem } from "../../src/trust/keys.ts";
import { decodePem, encodePem } from "../../src/trust/pem.ts";

const CURVES = ["P-256", "P-384", "P-521"] as const;
const HASH = { "P-256": "SHA-256", "P-384": "SHA-384", "P-521": "SHA-512" } as const;

function ecPair(curve: string): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, [
    "sign",
    "verify",
  ]) as Promise<CryptoKeyPair>;
}

/** Signs with `key` and verifies with `publicKey`: proves they are one pair. */
async function samePair(key: CryptoKey, publicKey: CryptoKey, curve: keyof typeof HASH) {
  const data = new TextEncoder().encode("meshgate");
  const alg = { name: "ECDSA", hash: HASH[curve] };
  const sig = await crypto.subtle.sign(alg, key, data);
  return await crypto.subtle.verify(alg, publicKey, sig, data);
}

Deno.test("exportSec1Pem writes a SEC1 key that OpenSSL reads as the same key", async () => {
  for (const curve of CURVES) {
    const pair = await ecPair(curve);
    const pem = await exportSec1Pem(pair.privateKey);
    assert.match(pem, /^-----BEGIN EC PRIVATE KEY-----\n[\s\S]+\n-----END EC PRIVATE KEY-----\n$/);
    // node:crypto (OpenSSL) parses it, with the curve named, and derives our public key.
    const parsed = crypto.createPrivateKey(pem);
    assert.equal(parsed.asymmetricKeyType, "ec");
    const theirs = crypto.createPublicKey(parsed).export({ type: "spki", format: "der" });
    const ours = new Uint8Array(await globalThis.crypto.subtle.exportKey("spki", pair.publicKey));
    assert.deepEqual(new Uint8Array(theirs), ours, curve);
  }
});

Deno.test("importEcPrivateKeyPem reads SEC1 and PKCS#8 on P-256, P-384 and P-521", async () => {
  for (const curve of CURVES) {
    const pair = await ecPair(curve);
    const sec1 = await importEcPrivateKeyPem(await exportSec1Pem(pair.privateKey));
    assert.equal(sec1.curve, curve);
    assert.ok(await samePair(sec1.key, pair.publicKey, curve), `SEC1 ${curve}`);
    const pkcs8 = encodePem(
      "PRIVATE KEY",
      new Uint8Array(await globalThis.crypto.subtle.exportKey("pkcs8", pair.privateKey)),
    );
    const fromPkcs8 = await importEcPrivateKeyPem(pkcs8);
    assert.equal(fromPkcs8.curve, curve);
    assert.ok(await samePair(fromPkcs8.key, pair.publicKey, curve), `PKCS#8 ${curve}`);
  }
});

Deno.test("importEcPrivateKeyPem takes the first key block of a bundle", async () => {
  const pair = await ecPair("P-256");
  const bundle = encodePem("CERTIFICATE", new Uint8Array([1, 2, 3])) +
    await exportSec1Pem(pair.privateKey);
  const { key } = await importEcPrivateKeyPem(bundle);
  assert.ok(await samePair(key, pair.publicKey, "P-256"));
});

Deno.test("exportSec1Pem refuses a key that is not an extractable EC private key", async () => {
  const rsa = await globalThis.crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  await assert.rejects(exportSec1Pem(rsa.privateKey), /not an exportable EC key/);
  const ec = await ecPair("P-256");
  await assert.rejects(exportSec1Pem(ec.publicKey), /not an exportable EC key/);
});

/** A SEC1 key's DER with its curve OID replaced by `oid` (same length or not). */
async function sec1WithCurve(oid: number[]): Promise<string> {
  const der = decodePem(await exportSec1Pem((await ecPair("P-256")).privateKey))[0]!.der;
  const p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
  const at = der.findIndex((_, i) => p256.every((b, j) => der[i + j] === b));
  assert.ok(at > 0);
  const out = [...der.slice(0, at), ...oid, ...der.slice(at + p256.length)];
  // Fix the [0] wrapper's and the outer SEQUENCE's lengths.
  out[at - 1] = oid.length;
  out[1] = out.length - 2;
  return encodePem("EC PRIVATE KEY", new Uint8Array(out));
}

Deno.test("importEcPrivateKeyPem refuses what it cannot use, each with a TypeError saying why", async () => {
  const cases: [string, string, RegExp][] = [
    ["no key block", encodePem("CERTIFICATE", new Uint8Array([1])), /no EC PRIVATE KEY/],
    ["empty text", "", /no EC PRIVATE KEY or PRIVATE KEY block/],
    ["RSA PRIVATE KEY label", encodePem("RSA PRIVATE KEY", new Uint8Array([0x30, 0])), /no EC/],
    [
      "secp256k1 (not a WebCrypto curve)",
      await sec1WithCurve([0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]),
      /unsupported EC curve/,
    ],
    [
      "SEC1 without the curve parameters",
      // SEQUENCE { INTEGER 1, OCTET STRING (32 bytes) }
      encodePem(
        "EC PRIVATE KEY",
        new Uint8Array([0x30, 37, 2, 1, 1, 4, 32, ...new Uint8Array(32)]),
      ),
      /SEC1 key does not name its curve/,
    ],
    [
      "SEC1 whose length runs past the end",
      encodePem("EC PRIVATE KEY", new Uint8Array([0x30, 0x50, 2, 1, 1])),
      /truncated DER/,
    ],
    ["an empty SEC1 block", encodePem("EC PRIVATE KEY", new Uint8Array()), /truncated DER/],
    ["an empty PKCS#8 SEQUENCE", encodePem("PRIVATE KEY", new Uint8Array([0x30, 0])), /PKCS#8/],
    ["an empty PKCS#8 block", encodePem("PRIVATE KEY", new Uint8Array()), /truncated DER/],
    [
      "a PKCS#8 RSA key",
      encodePem(
        "PRIVATE KEY",
        new Uint8Array(
          crypto.generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({
            type: "pkcs8",
            format: "der",
          }),
        ),
      ),
      /unsupported EC curve/,
    ],
  ];
  for (const [what, pem, re] of cases) {
    await assert.rejects(
      importEcPrivateKeyPem(pem),
      (e) => e instanceof TypeError && re.test(e.message) && !/undefined/.test(e.message),
      what,
    );
  }
});
