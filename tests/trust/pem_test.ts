// PEM bundles: decoding in order with text around the blocks, mismatched markers, bad base64,
// the certificate filter, encoding and colon hex.
import assert from "node:assert/strict";
import { colonHex, decodePem, encodePem, splitPemCertificates } from "../../src/trust/pem.ts";

const bytes = (n: number, from = 0) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

Deno.test("decodePem: every block in order, text around and between them ignored", () => {
  const text = "Bag Attributes: x\n" + encodePem("CERTIFICATE", bytes(3)) + "----\nnoise\r\n" +
    encodePem("EC PRIVATE KEY", bytes(70, 9)).replaceAll("\n", "\r\n") +
    encodePem("CERTIFICATE", bytes(1, 200)) + "trailing ----";
  const blocks = decodePem(text);
  assert.deepEqual(blocks.map((b) => b.label), ["CERTIFICATE", "EC PRIVATE KEY", "CERTIFICATE"]);
  assert.deepEqual(blocks[0]!.der, bytes(3));
  assert.deepEqual(blocks[1]!.der, bytes(70, 9), "CRLF line ends and wrapped lines");
  assert.deepEqual(blocks[2]!.der, bytes(1, 200));
  assert.deepEqual(decodePem(""), []);
  assert.deepEqual(decodePem("no pem here"), []);
});

Deno.test("decodePem: a block whose END names another label is no block", () => {
  const text = "-----BEGIN CERTIFICATE-----\nAQID\n-----END PRIVATE KEY-----\n";
  assert.deepEqual(decodePem(text), []);
  // Lower-case labels are not PEM labels either.
  assert.deepEqual(decodePem("-----BEGIN cert-----\nAQID\n-----END cert-----"), []);
});

Deno.test("decodePem: invalid base64 is a TypeError naming the block", () => {
  for (const body of ["!!!", "A===", "AQ-_", "AQID="]) {
    assert.throws(
      () => decodePem(`-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----`),
      (e) => e instanceof TypeError && e.message === 'PEM block "CERTIFICATE" has invalid base64',
      body,
    );
  }
  // Whitespace inside the body is not an error.
  const spaced = "-----BEGIN X-----\n AQ\tID \n-----END X-----";
  assert.deepEqual(decodePem(spaced)[0]!.der, bytes(3, 1));
});

Deno.test("splitPemCertificates keeps only certificates, each re-encoded with a final newline", () => {
  const a = encodePem("CERTIFICATE", bytes(100));
  const b = encodePem("CERTIFICATE", bytes(5, 50));
  const bundle = a.trimEnd() + encodePem("PRIVATE KEY", bytes(10)) + "\n\n" +
    b.replaceAll("\n", "\r\n");
  assert.deepEqual(splitPemCertificates(bundle), [a, b]);
  assert.deepEqual(splitPemCertificates(encodePem("PRIVATE KEY", bytes(4))), []);
  assert.throws(
    () => splitPemCertificates("-----BEGIN CERTIFICATE-----\n*\n-----END CERTIFICATE-----"),
    TypeError,
  );
});

Deno.test("encodePem writes 64-character lines and round-trips through decodePem", () => {
  for (const n of [0, 1, 47, 48, 49, 96, 1000]) {
    const der = bytes(n, n);
    const pem = encodePem("CERTIFICATE", der);
    assert.ok(pem.startsWith("-----BEGIN CERTIFICATE-----\n"), String(n));
    assert.ok(pem.endsWith("\n-----END CERTIFICATE-----\n"), String(n));
    const lines = pem.split("\n").slice(1, -2);
    for (const line of lines.slice(0, -1)) assert.equal(line.length, 64, `n=${n}`);
    assert.ok(lines.at(-1)!.length <= 64);
    assert.deepEqual(decodePem(pem)[0]!.der, der, `n=${n}`);
  }
});

Deno.test("colonHex: lowercase, two digits a byte, colons between", () => {
  assert.equal(colonHex(new Uint8Array([0, 1, 0xab, 0xff])), "00:01:ab:ff");
  assert.equal(colonHex(new Uint8Array([0x0c])), "0c");
  assert.equal(colonHex(new Uint8Array([])), "");
});
