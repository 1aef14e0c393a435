/**
 * What meshgate reads from an X.509 certificate, parsed once with `@peculiar/x509`.
 * @module
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn1 from "@peculiar/asn1-x509";
import { x509 } from "./_x509.ts";
import { colonHex, decodePem } from "./pem.ts";

/** The fields of a certificate the mesh cares about. */
export interface CertificateInfo {
  /** Colon-hex serial, minimal bytes (Consul's format). */
  serial: string;
  /** Subject DN (often empty on current Consul leaves). */
  subject: string;
  /** Issuer DN. */
  issuer: string;
  /** Validity start. */
  notBefore: Date;
  /** Validity end. */
  notAfter: Date;
  /** URI SANs in order; the first is the identity. */
  uris: string[];
  /** DNS SANs. */
  dnsNames: string[];
  /** Colon-hex Subject Key Identifier, if present. */
  subjectKeyId?: string;
  /** Colon-hex Authority Key Identifier, if present. */
  authorityKeyId?: string;
  /** Colon-hex SHA-1 of the DER: Consul's root `ID`. */
  sha1Fingerprint: string;
  /** Whether BasicConstraints says CA. */
  isCA: boolean;
  /** `ec` or `rsa` (or another algorithm name, lowercased). */
  keyType: string;
  /** Key size in bits (curve size for EC). */
  keyBits: number;
  /** The issuer's signature algorithm, e.g. `ECDSA-SHA-256` or `RSASSA-PKCS1-v1_5-SHA-1`. */
  signatureAlgorithm: string;
  /** Extended key usages (OIDs); empty when the extension is absent. */
  extendedKeyUsages: string[];
  /** Whether the certificate has a BasicConstraints extension. */
  hasBasicConstraints: boolean;
  /** BasicConstraints pathLenConstraint, when set. */
  pathLenConstraint?: number;
  /** KeyUsage bits (`digitalSignature` = 1 … `keyCertSign` = 32, `cRLSign` = 64), when present. */
  keyUsage?: number;
  /** OIDs of critical extensions this code does not understand (refused in a path). */
  unhandledCriticalExtensions: string[];
  /** Hex DER of the subject name, for exact issuer/subject chaining. */
  rawSubject: string;
  /** Hex DER of the issuer name. */
  rawIssuer: string;
  /** Name constraints (an issuer's limits on the names below it), when present. */
  nameConstraints?: NameConstraints;
  /** The DER bytes. */
  der: Uint8Array<ArrayBuffer>;
}

/** OIDs of the extended key usages Connect certificates carry. */
export const EKU = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  any: "2.5.29.37.0",
} as const;

/** The subtrees of a NameConstraints extension, by name type. */
export interface NameConstraints {
  /** Permitted DNS domains (Go's `PermittedDNSDomains`). */
  permittedDns: string[];
  /** Excluded DNS domains. */
  excludedDns: string[];
  /** Permitted URI domains (matched against a URI's host). */
  permittedUri: string[];
  /** Excluded URI domains. */
  excludedUri: string[];
  /** Name types constrained that this code does not evaluate (IP, email, directory name…). */
  unsupported: string[];
}

// Extensions whose meaning we apply (or, like policies and CRL/AIA pointers, that Go's
// crypto/x509 also accepts as critical without acting on them). Any other critical
// extension makes the certificate unusable, as RFC 5280 §4.2 requires.
const HANDLED_EXTENSIONS = new Set([
  "2.5.29.14", // subjectKeyIdentifier
  "2.5.29.15", // keyUsage
  "2.5.29.17", // subjectAltName
  "2.5.29.19", // basicConstraints
  "2.5.29.30", // nameConstraints
  "2.5.29.31", // cRLDistributionPoints
  "2.5.29.32", // certificatePolicies
  "2.5.29.35", // authorityKeyIdentifier
  "2.5.29.37", // extKeyUsage
  "1.3.6.1.5.5.7.1.1", // authorityInfoAccess
]);

/**
 * The certificate could not be parsed.
 *
 * @example
 * ```ts
 * import { CertificateError } from "@meshgate/meshgate";
 * console.log(new CertificateError("no CERTIFICATE block").message);
 * ```
 */
export class CertificateError extends Error {
  /**
   * Creates the error.
   * @param detail what is wrong
   */
  constructor(detail: string, options?: ErrorOptions) {
    super(`certificate: ${detail}`, options);
    this.name = "CertificateError";
  }
}

function minimalSerial(hex: string): string {
  let bytes = hex.toLowerCase().replace(/[^0-9a-f]/g, "");
  if (bytes.length % 2) bytes = "0" + bytes;
  while (bytes.length > 2 && bytes.startsWith("00")) bytes = bytes.slice(2);
  return bytes.match(/../g)?.join(":") ?? "00";
}

/**
 * Parses a certificate from PEM (the first CERTIFICATE block) or DER.
 *
 * @example
 * ```ts
 * import { parseCertificate } from "@meshgate/meshgate";
 * import { ConnectCA } from "@meshgate/meshgate/devagent";
 *
 * const ca = await ConnectCA.create(); // a test CA; or read a PEM: Deno.readTextFile("leaf.pem")
 * const { cert } = await ca.signLeaf("web");
 * const info = await parseCertificate(cert.CertPEM);
 * console.log(info.uris[0], info.notAfter); // spiffe://<trust domain>/…/svc/web 2026-…
 * ```
 * @throws {CertificateError} when there is no certificate or it does not parse
 */
export async function parseCertificate(input: string | Uint8Array): Promise<CertificateInfo> {
  let der: Uint8Array<ArrayBuffer>;
  if (typeof input === "string") {
    let blocks;
    try {
      blocks = decodePem(input);
    } catch (err) {
      throw new CertificateError(`bad PEM (${(err as Error).message})`, { cause: err });
    }
    const block = blocks.find((b) => b.label === "CERTIFICATE");
    if (!block) throw new CertificateError("no CERTIFICATE block in PEM");
    der = block.der;
  } else {
    der = new Uint8Array(input);
  }
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(der);
  } catch (err) {
    throw new CertificateError(`unparseable DER (${(err as Error).message})`, { cause: err });
  }
  // Extensions and the key decode lazily: a damaged one fails here, still as a typed error.
  try {
    return await describe(cert, der);
  } catch (err) {
    if (err instanceof CertificateError) throw err;
    throw new CertificateError(`unparseable certificate (${(err as Error).message})`, {
      cause: err,
    });
  }
}

async function describe(
  cert: x509.X509Certificate,
  der: Uint8Array<ArrayBuffer>,
): Promise<CertificateInfo> {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const alg = cert.publicKey.algorithm as {
    name: string;
    namedCurve?: string;
    modulusLength?: number;
  };
  let keyType = alg.name.toLowerCase();
  let keyBits = 0;
  if (alg.name === "ECDSA" || alg.name === "ECDH") {
    keyType = "ec";
    keyBits = Number(alg.namedCurve?.replace(/\D/g, "") ?? 0);
  } else if (alg.name.startsWith("RSA")) {
    keyType = "rsa";
    keyBits = alg.modulusLength ?? 0;
  }
  const sig = cert.signatureAlgorithm as { name?: string; hash?: { name?: string } | string };
  const sigHash = typeof sig.hash === "string" ? sig.hash : sig.hash?.name;
  const signatureAlgorithm = `${sig.name ?? "unknown"}${sigHash ? `-${sigHash}` : ""}`;
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  const nc = cert.extensions.find((e) => e.type === "2.5.29.30");
  const sha1 = new Uint8Array(await crypto.subtle.digest("SHA-1", der));
  const info: CertificateInfo = {
    serial: minimalSerial(cert.serialNumber),
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    uris: names.filter((n) => n.type === "url").map((n) => n.value),
    dnsNames: names.filter((n) => n.type === "dns").map((n) => n.value),
    subjectKeyId: ski ? colonHex(Uint8Array.fromHex(ski.keyId)) : undefined,
    authorityKeyId: aki?.keyId ? colonHex(Uint8Array.fromHex(aki.keyId)) : undefined,
    sha1Fingerprint: colonHex(sha1),
    isCA: bc?.ca ?? false,
    keyType,
    keyBits,
    signatureAlgorithm,
    extendedKeyUsages: Array.from(eku?.usages ?? [], String),
    hasBasicConstraints: !!bc,
    pathLenConstraint: bc?.pathLength,
    keyUsage: ku?.usages,
    // Plain arrays (x509's list classes would carry their own class into every copy).
    unhandledCriticalExtensions: Array.from(cert.extensions)
      .filter((e) => e.critical && !HANDLED_EXTENSIONS.has(e.type))
      .map((e) => e.type),
    rawSubject: new Uint8Array(cert.subjectName.toArrayBuffer()).toHex(),
    rawIssuer: new Uint8Array(cert.issuerName.toArrayBuffer()).toHex(),
    nameConstraints: nc ? parseNameConstraints(nc.value) : undefined,
    der,
  };
  parsed.set(info, cert);
  return info;
}

function parseNameConstraints(value: ArrayBuffer): NameConstraints {
  const asn = AsnConvert.parse(value, asn1.NameConstraints);
  const out: NameConstraints = {
    permittedDns: [],
    excludedDns: [],
    permittedUri: [],
    excludedUri: [],
    unsupported: [],
  };
  const sort = (subtrees: asn1.GeneralSubtrees | undefined, dns: string[], uri: string[]) => {
    for (const { base } of subtrees ?? []) {
      if (base.dNSName !== undefined) dns.push(base.dNSName);
      else if (base.uniformResourceIdentifier !== undefined) {
        uri.push(base.uniformResourceIdentifier);
      } else {out.unsupported.push(
          Object.keys(base).find((k) => base[k as keyof typeof base]) ?? "?",
        );}
    }
  };
  sort(asn.permittedSubtrees, out.permittedDns, out.permittedUri);
  sort(asn.excludedSubtrees, out.excludedDns, out.excludedUri);
  return out;
}

const parsed = new WeakMap<CertificateInfo, x509.X509Certificate>();

/** The `@peculiar/x509` object behind an info, for signature checks (internal). */
export function x509Of(info: CertificateInfo): x509.X509Certificate {
  const cert = parsed.get(info);
  if (!cert) throw new CertificateError("not created by parseCertificate");
  return cert;
}
