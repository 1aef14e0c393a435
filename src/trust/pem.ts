/**
 * PEM bundles: splitting, decoding and encoding. Tolerant of text around the blocks (Consul's
 * own fixtures end with a stray `----` line).
 * @module
 */

/** One decoded PEM block. */
export interface PemBlock {
  /** The label, e.g. `CERTIFICATE`, `EC PRIVATE KEY`. */
  label: string;
  /** The DER bytes. */
  der: Uint8Array<ArrayBuffer>;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/**
 * Decodes every PEM block in `text`, in order.
 *
 * @example
 * ```ts
 * import { decodePem } from "./pem.ts";
 * console.log(decodePem("no pem here").length); // 0
 * ```
 * @throws {TypeError} when a block's base64 is invalid
 */
export function decodePem(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) {
    // Both groups are required by BLOCK, so every match sets them.
    const label = m[1]!;
    const body = m[2]!.replace(/\s+/g, "");
    let der: Uint8Array<ArrayBuffer>;
    try {
      der = Uint8Array.fromBase64(body);
    } catch {
      throw new TypeError(`PEM block "${label}" has invalid base64`);
    }
    blocks.push({ label, der });
  }
  return blocks;
}

/**
 * Splits a bundle into its certificate PEMs, each normalised to end with a newline.
 *
 * @example
 * ```ts
 * import { splitPemCertificates } from "./pem.ts";
 * console.log(splitPemCertificates("").length); // 0
 * ```
 */
export function splitPemCertificates(text: string): string[] {
  return decodePem(text).filter((b) => b.label === "CERTIFICATE").map((b) =>
    encodePem("CERTIFICATE", b.der)
  );
}

/**
 * Encodes DER bytes as a PEM block with 64-character lines and a final newline.
 *
 * @example
 * ```ts
 * import { encodePem } from "./pem.ts";
 * console.log(encodePem("CERTIFICATE", new Uint8Array([1, 2, 3])));
 * ```
 */
export function encodePem(label: string, der: Uint8Array): string {
  const b64 = der.toBase64();
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/**
 * Lowercase colon-separated hex, as Consul writes serials, key IDs and fingerprints.
 *
 * @example
 * ```ts
 * import { colonHex } from "./pem.ts";
 * console.log(colonHex(new Uint8Array([1, 0x2c]))); // 01:2c
 * ```
 */
export function colonHex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":");
}
