/**
 * The corpus of `x509_differential_test.ts`: certificate paths that each keep every rule of X.509
 * path validation or break exactly one, made with `@peculiar/x509` and WebCrypto (keys are fresh
 * each run, structure and times are fixed), plus Consul's own test certificates from
 * `../shared/fixtures/consul/`. Each case carries the verdict we expect from meshgate, written by
 * hand.
 * @module
 */
import { x509 } from "../../src/trust/_x509.ts";
import { importEcPrivateKeyPem } from "../../src/trust/keys.ts";

/**
 * Reads one of Consul's test certificates from ../shared/fixtures/consul/. Not ../_helpers.ts:
 * it loads mod.ts, and only the trust modules should be able to break the trust tests.
 */
export function fixture(name: string): string {
  return Deno.readTextFileSync(new URL(`../../../shared/fixtures/consul/${name}`, import.meta.url));
}

/** The extended key usage a verifier asks for. */
export type Usage = "clientAuth" | "serverAuth";

/** One path to validate, in the JSON shape `goverify` reads (plus `rule` and `expect`). */
export interface CorpusCase {
  /** Unique name, `group/what`. */
  name: string;
  /** The rule the case keeps or breaks, in words. */
  rule: string;
  /** Leaf certificate, PEM. */
  leaf: string;
  /** Untrusted intermediates, PEM, in the order a peer would send them. */
  intermediates: string[];
  /** Trusted roots, PEM. */
  roots: string[];
  /** Validation time, RFC 3339. */
  at: string;
  /** Extended key usage asked for. */
  usage: Usage;
  /** The verdict we expect from meshgate. */
  expect: "ok" | "refuse";
}

const TD = "11111111-2222-3333-4444-555555555555.consul";
const SPIFFE_WEB = `spiffe://${TD}/ns/default/dc/dc1/svc/web`;
const SPIFFE_ADMIN = `spiffe://${TD}/ns/default/dc/dc1/svc/admin`;

/** Validation time of the generated cases. */
const AT = new Date("2026-06-01T00:00:00Z");
/** Validation time of Consul's set A (2018-03-23 to 2028-03-20) and sets B and C (to 2029). */
const FIXTURE_AT = "2027-06-01T00:00:00Z";
const LEAF_FROM = new Date("2026-01-01T00:00:00Z");
const LEAF_TO = new Date("2027-01-01T00:00:00Z");
const CA_FROM = new Date("2025-01-01T00:00:00Z");
const CA_TO = new Date("2035-01-01T00:00:00Z");
const BEFORE_AT = new Date("2026-05-01T00:00:00Z");
const AFTER_AT = new Date("2026-07-01T00:00:00Z");

/** OIDs the cases use. */
export const OID = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  anyExtendedKeyUsage: "2.5.29.37.0",
  nameConstraints: "2.5.29.30",
  /** A private-enterprise arc nobody implements: an extension no verifier knows. */
  unknown: "1.3.6.1.4.1.55555.1.1",
} as const;

const KU = x509.KeyUsageFlags;
const CA_KEY_USAGE = KU.keyCertSign | KU.cRLSign | KU.digitalSignature;
/** Consul's leaf key usage. */
const LEAF_KEY_USAGE = KU.digitalSignature | KU.keyEncipherment | KU.keyAgreement;

/** Key kinds a certificate can be made with. */
export type KeyKind = "P-256" | "P-384" | "P-521" | "Ed25519" | "RSA-2048" | "RSA-1024" | "RSA-PSS";
/** Signature hashes. */
export type Hash = "SHA-1" | "SHA-256" | "SHA-384" | "SHA-512";

/** A certificate and, when we hold it, its private key. */
export interface Issued {
  cert: x509.X509Certificate;
  pem: string;
  /** Key pair of the certified key (public half absent for fixtures). */
  keys: { privateKey: CryptoKey; publicKey?: CryptoKey };
  /** Hex SKID written in (or carried by) the certificate. */
  keyId: string;
}

/** What to put in a certificate; every field has a Consul-like default. */
export interface Spec {
  /** Subject DN; Consul's leaves have none. */
  subject?: string;
  /** Key of the subject: a fresh key of that kind, or an existing pair (cross-signing). */
  key?: KeyKind | CryptoKeyPair;
  /** Signer; absent means self-signed. */
  issuer?: Issued;
  /** Issuer DN written instead of the signer's subject (name-mismatch case). */
  issuerName?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Signature hash; default SHA-256 (SHA-384 for a P-384 signer). */
  hash?: Hash;
  /** basicConstraints: CA, not CA, or no extension. */
  ca?: boolean | "absent";
  pathLen?: number;
  /** keyUsage flags, or no extension. Default: CA or Consul-leaf usage. */
  keyUsage?: number | "absent";
  /** EKU OIDs, or no extension. Default: leaves server+client, CAs none. */
  eku?: string[] | "absent";
  /** URI SANs. Default: leaves web's SPIFFE ID, CAs the trust domain. */
  uris?: string[];
  dns?: string[];
  ips?: string[];
  /** Write SKID and AKID. @default {true} */
  keyIds?: boolean;
  /** AKID written instead of the signer's key ID (hex). */
  akid?: string;
  /** Permitted DNS subtrees of a critical nameConstraints extension. */
  permitDns?: string[];
  /** Excluded DNS subtrees of the same extension. */
  excludeDns?: string[];
  /** Permitted URI host subtrees of the same extension. */
  permitUri?: string[];
  /** Further permitted subtrees, each a GeneralName already DER-encoded. */
  permitRaw?: number[][];
  extra?: x509.Extension[];
}

let serial = 0x1000;

function nextSerial(): string {
  serial += 1;
  return serial.toString(16).padStart(4, "0");
}

async function generate(kind: KeyKind): Promise<CryptoKeyPair> {
  const usages: KeyUsage[] = ["sign", "verify"];
  if (kind === "P-256" || kind === "P-384" || kind === "P-521") {
    return await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: kind }, true, usages);
  }
  if (kind === "Ed25519") {
    return await crypto.subtle.generateKey({ name: "Ed25519" }, true, usages) as CryptoKeyPair;
  }
  return await crypto.subtle.generateKey(
    {
      name: kind === "RSA-PSS" ? "RSA-PSS" : "RSASSA-PKCS1-v1_5",
      modulusLength: kind === "RSA-1024" ? 1024 : 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    usages,
  );
}

async function keyIdOf(publicKey: CryptoKey): Promise<string> {
  const spki = await crypto.subtle.exportKey("spki", publicKey);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", spki)).toHex();
}

/** WebCrypto binds an RSA key to one hash: re-import the signer's key for another. */
async function signerFor(
  key: CryptoKey,
  hash: Hash,
): Promise<{ key: CryptoKey; algorithm: Algorithm | EcdsaParams | RsaPssParams }> {
  const name = key.algorithm.name;
  if (name === "ECDSA") return { key, algorithm: { name, hash } };
  if (name === "Ed25519") return { key, algorithm: { name } };
  // RFC 4055 parameters Go accepts: MGF1 with the same hash, salt as long as the hash.
  const algorithm = name === "RSA-PSS" ? { name, saltLength: Number(hash.slice(4)) / 8 } : { name };
  const bound = (key.algorithm as RsaHashedKeyAlgorithm).hash.name;
  if (bound === hash) return { key, algorithm };
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", key);
  const rebound = await crypto.subtle.importKey(
    "pkcs8",
    pkcs8,
    { name, hash },
    false,
    ["sign"],
  );
  return { key: rebound, algorithm };
}

function derLength(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

function tlv(tag: number, content: number[]): number[] {
  return [tag, ...derLength(content.length), ...content];
}

/**
 * NameConstraints ::= SEQUENCE { permittedSubtrees [0], excludedSubtrees [1] }, each a SEQUENCE
 * OF GeneralSubtree { base GeneralName } with dNSName [2] or uniformResourceIdentifier [6].
 */
function nameConstraints(spec: Spec): x509.Extension {
  const subtree = (tag: number, name: string) =>
    tlv(0x30, tlv(tag, [...new TextEncoder().encode(name)]));
  const permitted = [
    ...(spec.permitDns ?? []).flatMap((d) => subtree(0x82, d)),
    ...(spec.permitUri ?? []).flatMap((u) => subtree(0x86, u)),
    ...(spec.permitRaw ?? []).flatMap((name) => tlv(0x30, name)),
  ];
  const excluded = (spec.excludeDns ?? []).flatMap((d) => subtree(0x82, d));
  const content = [
    ...(permitted.length ? tlv(0xa0, permitted) : []),
    ...(excluded.length ? tlv(0xa1, excluded) : []),
  ];
  return new x509.Extension(OID.nameConstraints, true, new Uint8Array(tlv(0x30, content)));
}

/** An extension nobody knows, its value an ASN.1 NULL. */
export function unknownExtension(critical: boolean): x509.Extension {
  return new x509.Extension(OID.unknown, critical, new Uint8Array([0x05, 0x00]));
}

function toPem(cert: x509.X509Certificate): string {
  return cert.toString("pem").replaceAll("\r\n", "\n").trimEnd() + "\n";
}

/** Issues a certificate from `spec` (self-signed without `spec.issuer`). */
export async function issue(spec: Spec): Promise<Issued> {
  const keys = typeof spec.key === "object" ? spec.key : await generate(spec.key ?? "P-256");
  const keyId = await keyIdOf(keys.publicKey);
  const ca = spec.ca ?? false;
  const isCA = ca === true;
  const extensions: x509.Extension[] = [];
  if (ca !== "absent") {
    extensions.push(new x509.BasicConstraintsExtension(isCA, spec.pathLen, true));
  }
  const keyUsage = spec.keyUsage ?? (isCA ? CA_KEY_USAGE : LEAF_KEY_USAGE);
  if (keyUsage !== "absent") extensions.push(new x509.KeyUsagesExtension(keyUsage, true));
  const eku = spec.eku ?? (isCA ? "absent" : [OID.serverAuth, OID.clientAuth]);
  if (eku !== "absent") extensions.push(new x509.ExtendedKeyUsageExtension(eku, false));
  if (spec.keyIds ?? true) {
    extensions.push(new x509.SubjectKeyIdentifierExtension(keyId));
    extensions.push(
      new x509.AuthorityKeyIdentifierExtension(spec.akid ?? spec.issuer?.keyId ?? keyId),
    );
  }
  const names: x509.JsonGeneralNames = [
    ...(spec.uris ?? [isCA ? `spiffe://${TD}` : SPIFFE_WEB]).map((value) => ({
      type: "url" as const,
      value,
    })),
    ...(spec.dns ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(spec.ips ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  // Consul marks the SAN critical on leaves, whose subject is empty (RFC 5280 4.2.1.6).
  if (names.length) extensions.push(new x509.SubjectAlternativeNameExtension(names, !isCA));
  if (spec.permitDns || spec.excludeDns || spec.permitUri || spec.permitRaw) {
    extensions.push(nameConstraints(spec));
  }
  extensions.push(...spec.extra ?? []);

  const signer = spec.issuer?.keys.privateKey ?? keys.privateKey;
  const curve = (signer.algorithm as EcKeyAlgorithm).namedCurve;
  const defaultHash = curve === "P-384" ? "SHA-384" : curve === "P-521" ? "SHA-512" : "SHA-256";
  const { key: signingKey, algorithm } = await signerFor(signer, spec.hash ?? defaultHash);
  const subject = spec.subject ?? "";
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: nextSerial(),
    subject,
    // The signer's own encoded name, so issuer and subject bytes match exactly.
    issuer: spec.issuerName ?? spec.issuer?.cert.subjectName ?? subject,
    notBefore: spec.notBefore ?? (isCA ? CA_FROM : LEAF_FROM),
    notAfter: spec.notAfter ?? (isCA ? CA_TO : LEAF_TO),
    signingAlgorithm: algorithm,
    publicKey: keys.publicKey,
    signingKey,
    extensions,
  });
  return { cert, pem: toPem(cert), keys, keyId };
}

/** A root: self-signed CA. */
export function root(name: string, spec: Spec = {}): Promise<Issued> {
  return issue({ subject: `CN=${name}`, ca: true, ...spec });
}

/** An intermediate CA signed by `issuer`. */
export function intermediate(name: string, issuer: Issued, spec: Spec = {}): Promise<Issued> {
  return issue({ subject: `CN=${name}`, ca: true, issuer, ...spec });
}

/** A Consul-like leaf for web signed by `issuer`. */
export function leaf(issuer: Issued, spec: Spec = {}): Promise<Issued> {
  return issue({ issuer, ...spec });
}

/** The same certificate with the last byte of its signature changed. */
export function corrupt(cert: Issued): string {
  const der = new Uint8Array(cert.cert.rawData);
  der[der.length - 1]! ^= 0x01; // a certificate's DER is never empty
  return toPem(new x509.X509Certificate(der));
}

/** A CA from the fixtures whose private key we hold, so it can sign more leaves. */
async function fixtureAuthority(name: string): Promise<Issued> {
  const pem = fixture(`${name}.cert.pem`);
  const cert = new x509.X509Certificate(
    pem.slice(0, pem.indexOf("-----END CERTIFICATE-----") + 25),
  );
  const { key } = await importEcPrivateKeyPem(fixture(`${name}.key.pem`));
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new Error(`${name} has no SKID`);
  return { cert, pem, keys: { privateKey: key }, keyId: ski.keyId };
}

type Draft = Omit<CorpusCase, "at" | "usage" | "leaf" | "intermediates" | "roots"> & {
  at?: string;
  usage?: Usage;
  leaf: Issued | string;
  intermediates?: (Issued | string)[];
  roots: (Issued | string)[];
};

function pemOf(c: Issued | string): string {
  return typeof c === "string" ? c : c.pem;
}

function finish(d: Draft): CorpusCase {
  return {
    name: d.name,
    rule: d.rule,
    leaf: pemOf(d.leaf),
    intermediates: (d.intermediates ?? []).map(pemOf),
    roots: d.roots.map(pemOf),
    at: d.at ?? AT.toISOString().replace(".000Z", "Z"),
    usage: d.usage ?? "clientAuth",
    expect: d.expect,
  };
}

async function generatedValid(): Promise<Draft[]> {
  const r = await root("Meshgate Test Root");
  const i1 = await intermediate("Meshgate Intermediate 1", r);
  const i2 = await intermediate("Meshgate Intermediate 2", i1);
  const i3 = await intermediate("Meshgate Intermediate 3", i2);
  const other = await root("Unrelated Root");
  const otherInt = await intermediate("Unrelated Intermediate", other);
  const p384Root = await root("P-384 Root", { key: "P-384" });
  const p384Int = await intermediate("P-384 Intermediate", p384Root, { key: "P-384" });
  const rsaRoot = await root("RSA-2048 Root", { key: "RSA-2048" });
  const sha1Root = await root("SHA-1 Self-Signed Root", { hash: "SHA-1" });
  const atInstant = new Date(AT);
  const noKu = await intermediate("Intermediate Without KeyUsage", r, { keyUsage: "absent" });
  const pl0 = await intermediate("PathLen 0 Intermediate", r, { pathLen: 0 });
  const pl1Root = await root("PathLen 1 Root", { pathLen: 1 });
  const pl1Int = await intermediate("Below PathLen 1", pl1Root);
  const ncRoot = await root("Name-Constrained Root", { permitDns: [TD] });
  const serverOnlyInt = await intermediate("ServerAuth-Only Intermediate", r, {
    eku: [OID.serverAuth],
  });
  const noIdsRoot = await root("Root Without Key IDs", { keyIds: false });
  const leafOf = (issuer: Issued, spec: Spec = {}) => leaf(issuer, spec);
  const l1 = await leafOf(i1);
  const l3 = await leafOf(i3);
  return [
    {
      name: "valid/leaf-root",
      rule: "leaf signed by a trusted root",
      leaf: await leafOf(r),
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/leaf-root-serverAuth",
      rule: "the same path asked for serverAuth",
      leaf: await leafOf(r),
      roots: [r],
      usage: "serverAuth",
      expect: "ok",
    },
    {
      name: "valid/leaf-intermediate-root",
      rule: "one intermediate",
      leaf: l1,
      intermediates: [i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/five-certificates",
      rule: "leaf + 3 intermediates + root: the default depth limit, reached",
      leaf: l3,
      intermediates: [i3, i2, i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/p384-root-p384-intermediate",
      rule: "P-384 CAs signing with ECDSA-SHA-384 over a P-256 leaf",
      leaf: await leafOf(p384Int),
      intermediates: [p384Int],
      roots: [p384Root],
      expect: "ok",
    },
    {
      name: "valid/p384-leaf",
      rule: "a P-384 leaf key",
      leaf: await leafOf(r, { key: "P-384" }),
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/rsa2048-root-rsa2048-leaf",
      rule: "RSA-2048 with SHA-256 throughout",
      leaf: await leafOf(rsaRoot, { key: "RSA-2048" }),
      roots: [rsaRoot],
      expect: "ok",
    },
    {
      name: "valid/root-also-among-intermediates",
      rule: "the peer also sends the root",
      leaf: l1,
      intermediates: [i1, r],
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/leaf-repeated-among-intermediates",
      rule: "the peer sends its own leaf again",
      leaf: l1,
      intermediates: [l1, i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/duplicated-intermediates",
      rule: "the same intermediate twice",
      leaf: l1,
      intermediates: [i1, i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/unordered-intermediates",
      rule: "intermediates root-first instead of leaf-first",
      leaf: l3,
      intermediates: [i1, i2, i3],
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/extra-unrelated-intermediates",
      rule: "unrelated certificates among the intermediates",
      leaf: l1,
      intermediates: [otherInt, other, i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/two-roots-in-pool",
      rule: "an unrelated root beside the right one",
      leaf: l1,
      intermediates: [i1],
      roots: [other, r],
      expect: "ok",
    },
    {
      name: "valid/eku-absent",
      rule: "a leaf without EKU may be used for anything",
      leaf: await leafOf(r, { eku: "absent" }),
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/eku-any",
      rule: "anyExtendedKeyUsage alone",
      leaf: await leafOf(r, { eku: [OID.anyExtendedKeyUsage] }),
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/eku-clientAuth-for-clientAuth",
      rule: "EKU clientAuth only, asked for clientAuth",
      leaf: await leafOf(r, { eku: [OID.clientAuth] }),
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/eku-serverAuth-for-serverAuth",
      rule: "EKU serverAuth only, asked for serverAuth",
      leaf: await leafOf(r, { eku: [OID.serverAuth] }),
      roots: [r],
      usage: "serverAuth",
      expect: "ok",
    },
    {
      name: "valid/intermediate-eku-serverAuth-for-serverAuth",
      rule: "an intermediate limited to serverAuth, asked for serverAuth",
      leaf: await leafOf(serverOnlyInt),
      intermediates: [serverOnlyInt],
      roots: [r],
      usage: "serverAuth",
      expect: "ok",
    },
    {
      name: "valid/intermediate-without-keyUsage",
      rule: "a CA without keyUsage may sign certificates",
      leaf: await leafOf(noKu),
      intermediates: [noKu],
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/noncritical-unknown-extension",
      rule: "an unknown extension not marked critical is ignored",
      leaf: await leafOf(r, { extra: [unknownExtension(false)] }),
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/pathlen0-intermediate-signs-leaf",
      rule: "pathLenConstraint 0 allows issuing leaves",
      leaf: await leafOf(pl0),
      intermediates: [pl0],
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/pathlen1-root-one-intermediate",
      rule: "pathLenConstraint 1 allows one intermediate",
      leaf: await leafOf(pl1Int),
      intermediates: [pl1Int],
      roots: [pl1Root],
      expect: "ok",
    },
    {
      name: "valid/leaf-notAfter-equals-at",
      rule: "notAfter is inclusive",
      leaf: await leafOf(r, { notAfter: atInstant }),
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/leaf-notBefore-equals-at",
      rule: "notBefore is inclusive",
      leaf: await leafOf(r, { notBefore: atInstant }),
      roots: [r],
      expect: "ok",
    },
    {
      name: "valid/name-constraints-uri-only-leaf",
      rule: "a DNS name constraint does not restrict URI SANs (Consul's root and leaves)",
      leaf: await leafOf(ncRoot),
      roots: [ncRoot],
      expect: "ok",
    },
    {
      name: "valid/name-constraints-conforming-dns",
      rule: "a DNS SAN inside the permitted subtree",
      leaf: await leafOf(ncRoot, { dns: [`web.${TD}`] }),
      roots: [ncRoot],
      expect: "ok",
    },
    {
      name: "valid/sha1-self-signature-on-root",
      rule: "a trust anchor's self-signature is never checked, SHA-1 or not",
      leaf: await leafOf(sha1Root),
      roots: [sha1Root],
      expect: "ok",
    },
    {
      name: "valid/no-key-identifiers",
      rule: "no SKID/AKID anywhere: issuers are found by name",
      leaf: await leafOf(noIdsRoot, { keyIds: false }),
      roots: [noIdsRoot],
      expect: "ok",
    },
  ];
}

async function rotation(): Promise<Draft[]> {
  // Consul's rotation: the new root's key and name, signed by the old root, is handed out as an
  // intermediate so peers still trusting only the old root accept leaves of the new one.
  const oldRoot = await root("pri-old.consul.ca.11111111.consul");
  const newRoot = await root("pri-new.consul.ca.11111111.consul");
  const cross = await intermediate("pri-new.consul.ca.11111111.consul", oldRoot, {
    key: newRoot.keys as CryptoKeyPair,
  });
  const newLeaf = await leaf(newRoot);
  const oldLeaf = await leaf(oldRoot);
  const rule = "root rotation with a cross-signed certificate";
  return [
    {
      name: "rotation/new-leaf-cross-signed-to-old-root",
      rule,
      leaf: newLeaf,
      intermediates: [cross],
      roots: [oldRoot],
      expect: "ok",
    },
    { name: "rotation/new-leaf-to-new-root", rule, leaf: newLeaf, roots: [newRoot], expect: "ok" },
    {
      name: "rotation/new-leaf-cross-signed-both-roots",
      rule,
      leaf: newLeaf,
      intermediates: [cross],
      roots: [oldRoot, newRoot],
      usage: "serverAuth",
      expect: "ok",
    },
    {
      name: "rotation/old-leaf-both-roots",
      rule,
      leaf: oldLeaf,
      intermediates: [cross],
      roots: [newRoot, oldRoot],
      expect: "ok",
    },
    {
      name: "rotation/new-leaf-old-root-without-cross",
      rule: "the cross-signed certificate is what links the roots",
      leaf: newLeaf,
      roots: [oldRoot],
      expect: "refuse",
    },
    {
      name: "rotation/old-leaf-cross-signed-new-root-only",
      rule: "cross-signing links new to old, not old to new",
      leaf: oldLeaf,
      intermediates: [cross],
      roots: [newRoot],
      expect: "refuse",
    },
  ];
}

async function fixtures(): Promise<Draft[]> {
  const f = (name: string) => fixture(`${name}.pem`);
  const ca1 = await fixtureAuthority("ca1-ca-consul-internal");
  const ca2 = f("ca2-ca-vault.cert");
  const xc = f("ca2-xc-by-ca1.cert");
  const ec384 = f("cert-with-ec-384-key");
  const rsa4096 = f("cert-with-rsa-4096-key");
  const ec256 = f("cert-with-ec-256-key");
  const at = FIXTURE_AT;
  // ca1 is the built-in provider's root: it permits DNS names under the trust domain only.
  const inside = await leaf(ca1, {
    dns: [`web.${TD}`],
    notBefore: new Date("2027-01-01"),
    notAfter: new Date("2028-01-01"),
  });
  const outside = await leaf(ca1, {
    dns: ["web.example.com"],
    notBefore: new Date("2027-01-01"),
    notAfter: new Date("2028-01-01"),
  });
  const p384Leaf = await leaf(ca1, {
    key: "P-384",
    notBefore: new Date("2027-01-01"),
    notAfter: new Date("2028-01-01"),
  });
  const rsaLeaf = await leaf(ca1, {
    key: "RSA-2048",
    notBefore: new Date("2027-01-01"),
    notAfter: new Date("2028-01-01"),
  });
  return [
    {
      name: "fixture/ca1-svc-web-to-ca1",
      rule: "Consul set A leaf",
      leaf: f("ca1-svc-web.cert"),
      roots: [ca1],
      at,
      expect: "ok",
    },
    {
      name: "fixture/ca1-svc-db-to-ca1-serverAuth",
      rule: "Consul set A leaf, serverAuth",
      leaf: f("ca1-svc-db.cert"),
      roots: [ca1],
      at,
      usage: "serverAuth",
      expect: "ok",
    },
    {
      name: "fixture/ca2-svc-web-to-ca2",
      rule: "Consul set A, the Vault root",
      leaf: f("ca2-svc-web.cert"),
      roots: [ca2],
      at,
      expect: "ok",
    },
    {
      name: "fixture/ca2-svc-db-cross-signed-to-ca1",
      rule: "Consul's rotation fixture",
      leaf: f("ca2-svc-db.cert"),
      intermediates: [xc],
      roots: [ca1],
      at,
      expect: "ok",
    },
    {
      name: "fixture/ca2-svc-cache-cross-signed-to-both",
      rule: "Consul's rotation fixture, both roots trusted",
      leaf: f("ca2-svc-cache.cert"),
      intermediates: [xc],
      roots: [ca1, ca2],
      at,
      usage: "serverAuth",
      expect: "ok",
    },
    {
      name: "fixture/ca2-svc-web-to-ca1-without-cross",
      rule: "no path without the cross-signed certificate",
      leaf: f("ca2-svc-web.cert"),
      roots: [ca1],
      at,
      expect: "refuse",
    },
    {
      name: "fixture/ca1-svc-web-to-ca2",
      rule: "wrong root",
      leaf: f("ca1-svc-web.cert"),
      roots: [ca2],
      at,
      expect: "refuse",
    },
    {
      name: "fixture/testca2-svc-web-dc1-to-testca2",
      rule: "Consul set B: key IDs written as ASCII colon-hex",
      leaf: f("testca2-svc-web-dc1.cert"),
      roots: [f("testca2-root.cert")],
      at,
      expect: "ok",
    },
    {
      name: "fixture/ca1-svc-web-mixed-root-pool",
      rule: "P-384, RSA-4096 and P-256 roots of another cluster beside the right one",
      leaf: f("ca1-svc-web.cert"),
      roots: [ec384, rsa4096, ec256, ca1],
      at,
      expect: "ok",
    },
    {
      name: "fixture/ca1-svc-web-foreign-roots",
      rule: "P-384 and RSA-4096 roots that did not sign it",
      leaf: f("ca1-svc-web.cert"),
      roots: [ec384, rsa4096],
      at,
      expect: "refuse",
    },
    {
      name: "fixture/ca1-svc-web-after-expiry",
      rule: "set A expires 2028-03-20",
      leaf: f("ca1-svc-web.cert"),
      roots: [ca1],
      at: "2028-06-01T00:00:00Z",
      expect: "refuse",
    },
    {
      name: "fixture/p384-root-presented-as-leaf",
      rule: "a trusted root presented as the leaf",
      leaf: ec384,
      roots: [ec384],
      at,
      expect: "refuse",
    },
    {
      name: "fixture/rsa4096-root-presented-as-leaf",
      rule: "a trusted root presented as the leaf",
      leaf: rsa4096,
      roots: [rsa4096],
      at,
      expect: "refuse",
    },
    {
      name: "fixture/ca1-minted-dns-inside-trust-domain",
      rule: "Consul's root name constraint, conforming DNS SAN",
      leaf: inside,
      roots: [ca1],
      at,
      expect: "ok",
    },
    {
      name: "fixture/ca1-minted-dns-outside-trust-domain",
      rule: "Consul's root name constraint, DNS SAN outside it",
      leaf: outside,
      roots: [ca1],
      at,
      expect: "refuse",
    },
    {
      name: "fixture/ca1-minted-p384-leaf",
      rule: "P-384 leaf under Consul's root",
      leaf: p384Leaf,
      roots: [ca1],
      at,
      expect: "ok",
    },
    {
      name: "fixture/ca1-minted-rsa2048-leaf",
      rule: "RSA-2048 leaf under Consul's root",
      leaf: rsaLeaf,
      roots: [ca1],
      at,
      usage: "serverAuth",
      expect: "ok",
    },
  ];
}

async function generatedInvalid(): Promise<Draft[]> {
  const r = await root("Meshgate Test Root");
  const i1 = await intermediate("Meshgate Intermediate 1", r);
  const l1 = await leaf(i1);
  const rsaRoot = await root("RSA-2048 Root", { key: "RSA-2048" });
  const via = async (
    int: Issued,
    leafSpec: Spec = {},
  ): Promise<Pick<Draft, "leaf" | "intermediates" | "roots">> => ({
    leaf: await leaf(int, leafSpec),
    intermediates: [int],
    roots: [r],
  });
  const underInt = (spec: Spec) => intermediate("Broken Intermediate", r, spec);
  const underRoot = async (rootSpec: Spec, withIntermediate = false) => {
    const broken = await root("Broken Root", rootSpec);
    if (!withIntermediate) return { leaf: await leaf(broken), roots: [broken] };
    const int = await intermediate("Below Broken Root", broken);
    return { leaf: await leaf(int), intermediates: [int], roots: [broken] };
  };
  // pathLen 0 on an intermediate with another intermediate below it.
  const pl0 = await intermediate("PathLen 0 Intermediate", r, { pathLen: 0 });
  const belowPl0 = await intermediate("Below PathLen 0", pl0);
  // The attack: web's own leaf key signs a certificate claiming to be admin.
  const web = await leaf(r);
  const forged = await leaf(web, { uris: [SPIFFE_ADMIN] });
  const webNoBc = await leaf(r, { ca: "absent" });
  const forgedNoBc = await leaf(webNoBc, { uris: [SPIFFE_ADMIN] });
  // Four intermediates: six certificates, one over the default limit of five.
  const d1 = await intermediate("Depth 1", r);
  const d2 = await intermediate("Depth 2", d1);
  const d3 = await intermediate("Depth 3", d2);
  const d4 = await intermediate("Depth 4", d3);
  const impostor = await root("Meshgate Test Root");
  const foreign = await root("Foreign Root");
  const ncInt = await intermediate("Name-Constrained Intermediate", r, { permitDns: [TD] });
  const ncRoot = await root("Name-Constrained Root", { permitDns: [TD] });
  const sha1Int = await underInt({ hash: "SHA-1" });
  const rsa1024Int = await underInt({ key: "RSA-1024" });
  return [
    {
      name: "invalid/intermediate-without-basicConstraints",
      rule: "a CA must assert basicConstraints cA",
      ...await via(await underInt({ ca: "absent" })),
      expect: "refuse",
    },
    {
      name: "invalid/intermediate-cA-false",
      rule: "basicConstraints cA false cannot sign",
      ...await via(await underInt({ ca: false, keyUsage: CA_KEY_USAGE })),
      expect: "refuse",
    },
    {
      name: "invalid/intermediate-keyUsage-without-keyCertSign",
      rule: "keyUsage present without keyCertSign",
      ...await via(await underInt({ keyUsage: KU.digitalSignature | KU.cRLSign })),
      expect: "refuse",
    },
    {
      name: "invalid/root-keyUsage-without-keyCertSign",
      rule: "keyUsage present without keyCertSign, on the root",
      ...await underRoot({ keyUsage: KU.digitalSignature | KU.cRLSign }),
      expect: "refuse",
    },
    {
      name: "invalid/root-without-basicConstraints",
      rule: "a v3 root without basicConstraints cannot sign",
      ...await underRoot({ ca: "absent" }),
      expect: "refuse",
    },
    {
      name: "invalid/root-pathlen0-with-intermediate",
      rule: "pathLenConstraint 0 on the root, one intermediate below",
      ...await underRoot({ pathLen: 0 }, true),
      expect: "refuse",
    },
    {
      name: "invalid/intermediate-pathlen0-with-intermediate",
      rule: "pathLenConstraint 0 on an intermediate, another below",
      leaf: await leaf(belowPl0),
      intermediates: [belowPl0, pl0],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/leaf-is-ca",
      rule: "the end entity asserts cA",
      leaf: await leaf(r, {
        ca: true,
        keyUsage: CA_KEY_USAGE | LEAF_KEY_USAGE,
        uris: [SPIFFE_WEB],
      }),
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/leaf-eku-serverAuth-for-clientAuth",
      rule: "EKU serverAuth only, asked for clientAuth",
      leaf: await leaf(r, { eku: [OID.serverAuth] }),
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/leaf-eku-clientAuth-for-serverAuth",
      rule: "EKU clientAuth only, asked for serverAuth",
      leaf: await leaf(r, { eku: [OID.clientAuth] }),
      roots: [r],
      usage: "serverAuth",
      expect: "refuse",
    },
    {
      name: "invalid/intermediate-eku-excludes-clientAuth",
      rule: "an intermediate's EKU limits the leaves below it",
      ...await via(await underInt({ eku: [OID.serverAuth] })),
      expect: "refuse",
    },
    {
      name: "invalid/root-eku-excludes-clientAuth",
      rule: "a root's EKU limits the leaves below it",
      ...await underRoot({ eku: [OID.serverAuth] }),
      expect: "refuse",
    },
    {
      name: "invalid/unknown-critical-extension-leaf",
      rule: "an unknown critical extension on the leaf",
      leaf: await leaf(i1, { extra: [unknownExtension(true)] }),
      intermediates: [i1],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/unknown-critical-extension-intermediate",
      rule: "an unknown critical extension on an intermediate",
      ...await via(await underInt({ extra: [unknownExtension(true)] })),
      expect: "refuse",
    },
    {
      name: "invalid/unknown-critical-extension-root",
      rule: "an unknown critical extension on the root",
      ...await underRoot({ extra: [unknownExtension(true)] }),
      expect: "refuse",
    },
    {
      name: "invalid/expired-leaf",
      rule: "leaf notAfter before at",
      leaf: await leaf(i1, { notAfter: BEFORE_AT }),
      intermediates: [i1],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/not-yet-valid-leaf",
      rule: "leaf notBefore after at",
      leaf: await leaf(i1, { notBefore: AFTER_AT }),
      intermediates: [i1],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/expired-intermediate",
      rule: "intermediate notAfter before at",
      ...await via(await underInt({ notAfter: BEFORE_AT })),
      expect: "refuse",
    },
    {
      name: "invalid/not-yet-valid-intermediate",
      rule: "intermediate notBefore after at",
      ...await via(await underInt({ notBefore: AFTER_AT })),
      expect: "refuse",
    },
    {
      name: "invalid/expired-root",
      rule: "root notAfter before at",
      ...await underRoot({ notAfter: BEFORE_AT }),
      expect: "refuse",
    },
    {
      name: "invalid/not-yet-valid-root",
      rule: "root notBefore after at",
      ...await underRoot({ notBefore: AFTER_AT }),
      expect: "refuse",
    },
    {
      name: "invalid/sha1-ecdsa-leaf",
      rule: "leaf signed with ECDSA-SHA-1",
      leaf: await leaf(i1, { hash: "SHA-1" }),
      intermediates: [i1],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/sha1-ecdsa-intermediate",
      rule: "intermediate signed with ECDSA-SHA-1",
      ...await via(sha1Int),
      expect: "refuse",
    },
    {
      name: "invalid/sha1-rsa-leaf",
      rule: "leaf signed with RSASSA-PKCS1-v1_5-SHA-1",
      leaf: await leaf(rsaRoot, { hash: "SHA-1" }),
      roots: [rsaRoot],
      expect: "refuse",
    },
    {
      name: "invalid/rsa1024-leaf-key",
      rule: "an RSA-1024 key in the path (the leaf's)",
      leaf: await leaf(i1, { key: "RSA-1024" }),
      intermediates: [i1],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/rsa1024-intermediate-key",
      rule: "an RSA-1024 key in the path (an intermediate's)",
      ...await via(rsa1024Int),
      expect: "refuse",
    },
    {
      name: "invalid/leaf-signed-by-leaf",
      rule: "a forged admin certificate signed with web's leaf key",
      leaf: forged,
      intermediates: [web],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/leaf-signed-by-leaf-without-basicConstraints",
      rule: "the same attack through a leaf without basicConstraints",
      leaf: forgedNoBc,
      intermediates: [webNoBc],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/wrong-akid",
      rule: "AKID names another key; signature and issuer name are right",
      leaf: await leaf(r, { akid: "00".repeat(31) + "01" }),
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/issuer-name-mismatch",
      rule: "signed by the root's key, issuer DN differs from its subject",
      leaf: await leaf(r, { issuerName: "CN=Meshgate Test Root 2" }),
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/corrupted-leaf-signature",
      rule: "one bit of the leaf's signature flipped",
      leaf: corrupt(l1),
      intermediates: [i1],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/self-signed-spiffe-leaf",
      rule: "self-signed certificate carrying web's SPIFFE ID",
      leaf: await issue({}),
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/foreign-root",
      rule: "a root of another CA",
      leaf: l1,
      intermediates: [i1],
      roots: [foreign],
      expect: "refuse",
    },
    {
      name: "invalid/impostor-root-same-name",
      rule: "a root with the right name and another key",
      leaf: l1,
      intermediates: [i1],
      roots: [impostor],
      expect: "refuse",
    },
    {
      name: "invalid/no-roots",
      rule: "nothing trusted",
      leaf: l1,
      intermediates: [i1],
      roots: [],
      expect: "refuse",
    },
    {
      name: "invalid/intermediate-missing",
      rule: "the intermediate is not sent",
      leaf: l1,
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/too-deep",
      rule: "leaf + 4 intermediates + root: six certificates, over the limit of five",
      leaf: await leaf(d4),
      intermediates: [d4, d3, d2, d1],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "invalid/name-constraints-root-dns-outside",
      rule: "a DNS SAN outside the root's permitted subtree",
      leaf: await leaf(ncRoot, { dns: ["web.example.com"] }),
      roots: [ncRoot],
      expect: "refuse",
    },
    {
      name: "invalid/name-constraints-intermediate-dns-outside",
      rule: "a DNS SAN outside an intermediate's permitted subtree",
      ...await via(ncInt, { dns: ["web.example.com"] }),
      expect: "refuse",
    },
  ];
}

async function edges(): Promise<Draft[]> {
  const r = await root("Meshgate Test Root");
  const i1 = await intermediate("Meshgate Intermediate 1", r);
  const l1 = await leaf(i1);
  // Twins of i1: same name and key, so each signs l1 as well as i1 does; one path is good.
  const twin = (spec: Spec) =>
    intermediate("Meshgate Intermediate 1", r, { key: i1.keys as CryptoKeyPair, ...spec });
  const expiredTwin = await twin({ notAfter: BEFORE_AT });
  const serverOnlyTwin = await twin({ eku: [OID.serverAuth] });
  const sha1Twin = await twin({ hash: "SHA-1" });
  const d1 = await intermediate("Depth 1", r);
  const d2 = await intermediate("Depth 2", d1);
  const deepTwin = await intermediate("Meshgate Intermediate 1", d2, {
    key: i1.keys as CryptoKeyPair,
  });
  const impostor = await root("Meshgate Test Root");
  const expiredRoot = await root("Expired Unrelated Root", { notAfter: BEFORE_AT });
  const oddInt = await intermediate("Odd Unrelated Intermediate", r, {
    extra: [unknownExtension(true)],
  });
  // Two CAs that sign each other, neither trusted.
  const loopA = await root("Loop A");
  const loopB = await intermediate("Loop B", loopA);
  const loopAbyB = await intermediate("Loop A", loopB, { key: loopA.keys as CryptoKeyPair });
  const shortLived = await intermediate("Short-Lived Intermediate", r, {
    notAfter: new Date("2026-08-01T00:00:00Z"),
  });
  const tdRoot = await root("Trust-Domain Root", { permitDns: [TD] });
  const dotRoot = await root("Subdomains-Only Root", { permitDns: [`.${TD}`] });
  const exclRoot = await root("Excluding Root", { excludeDns: [`evil.${TD}`] });
  const uriRoot = await root("URI-Constrained Root", { permitUri: [TD] });
  // iPAddress [7]: 10.0.0.0/8 as address then mask.
  const ipRoot = await root("IP-Constrained Root", {
    permitDns: [TD],
    permitRaw: [tlv(0x87, [10, 0, 0, 0, 255, 0, 0, 0])],
  });
  // directoryName [4]: the Name CN=mesh (SEQUENCE OF SET OF { OID 2.5.4.3, UTF8String }).
  const cnMesh = tlv(
    0x30,
    tlv(0x31, tlv(0x30, [0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 4, 109, 101, 115, 104])),
  );
  const dirRoot = await root("Directory-Name-Constrained Root", { permitRaw: [tlv(0xa4, cnMesh)] });
  const narrowInt = await intermediate("Narrower Intermediate", tdRoot, {
    permitDns: ["example.com"],
  });
  const outsideInt = await intermediate("Intermediate Outside", tdRoot, {
    dns: ["ca.example.com"],
  });
  const rsaPssRoot = await root("RSA-PSS Root", { key: "RSA-PSS" });
  const p521Root = await root("P-521 Root", { key: "P-521" });
  const edRoot = await root("Ed25519 Root", { key: "Ed25519" });
  return [
    {
      name: "path/expired-twin-intermediate-listed-first",
      rule: "path building tries the next issuer after an expired one",
      leaf: l1,
      intermediates: [expiredTwin, i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "path/eku-restricted-twin-listed-first",
      rule: "path building tries the next issuer after one whose EKU excludes the usage",
      leaf: l1,
      intermediates: [serverOnlyTwin, i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "path/sha1-twin-listed-first",
      rule: "path building tries the next issuer after a SHA-1-signed one",
      leaf: l1,
      intermediates: [sha1Twin, i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "path/short-path-beside-too-deep-path",
      rule: "a path within the depth limit exists beside one over it",
      leaf: l1,
      intermediates: [deepTwin, d2, d1, i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "path/impostor-root-beside-real-root",
      rule: "a same-name root with another key, then the right one",
      leaf: l1,
      intermediates: [i1],
      roots: [impostor, r],
      expect: "ok",
    },
    {
      name: "path/expired-unrelated-root-in-pool",
      rule: "an expired root nobody uses does not matter",
      leaf: l1,
      intermediates: [i1],
      roots: [expiredRoot, r],
      expect: "ok",
    },
    {
      name: "path/unrelated-intermediate-with-critical-extension",
      rule: "an unknown critical extension on a certificate outside the path does not matter",
      leaf: l1,
      intermediates: [oddInt, i1],
      roots: [r],
      expect: "ok",
    },
    {
      name: "path/leaf-outlives-intermediate",
      rule: "validity periods need not nest",
      leaf: await leaf(shortLived),
      intermediates: [shortLived],
      roots: [r],
      expect: "ok",
    },
    {
      name: "path/cross-signing-loop",
      rule: "two CAs signing each other, neither trusted: refused, and it ends",
      leaf: await leaf(loopA),
      intermediates: [loopAbyB, loopB, loopA],
      roots: [r],
      expect: "refuse",
    },
    {
      name: "names/dns-san-upper-case-inside",
      rule: "DNS constraints compare case-insensitively",
      leaf: await leaf(tdRoot, { dns: [`WEB.${TD.toUpperCase()}`] }),
      roots: [tdRoot],
      expect: "ok",
    },
    {
      name: "names/dns-san-equal-to-constraint",
      rule: "the permitted name itself is inside its subtree",
      leaf: await leaf(tdRoot, { dns: [TD] }),
      roots: [tdRoot],
      expect: "ok",
    },
    {
      name: "names/dns-suffix-not-at-label-boundary",
      rule: "a DNS constraint matches whole labels only",
      leaf: await leaf(tdRoot, { dns: [`evil${TD}`] }),
      roots: [tdRoot],
      expect: "refuse",
    },
    {
      name: "names/leading-dot-excludes-the-name-itself",
      rule: "a constraint with a leading period permits subdomains only",
      leaf: await leaf(dotRoot, { dns: [TD] }),
      roots: [dotRoot],
      expect: "refuse",
    },
    {
      name: "names/leading-dot-permits-subdomain",
      rule: "a constraint with a leading period permits subdomains",
      leaf: await leaf(dotRoot, { dns: [`web.${TD}`] }),
      roots: [dotRoot],
      expect: "ok",
    },
    {
      name: "names/excluded-dns-subtree",
      rule: "a DNS SAN inside an excluded subtree",
      leaf: await leaf(exclRoot, { dns: [`a.evil.${TD}`] }),
      roots: [exclRoot],
      expect: "refuse",
    },
    {
      name: "names/outside-excluded-dns-subtree",
      rule: "a DNS SAN beside an excluded subtree",
      leaf: await leaf(exclRoot, { dns: [`web.${TD}`] }),
      roots: [exclRoot],
      expect: "ok",
    },
    {
      name: "names/ip-san-under-dns-only-constraint",
      rule: "constraints of one name type leave other types free",
      leaf: await leaf(tdRoot, { ips: ["10.0.0.1"] }),
      roots: [tdRoot],
      expect: "ok",
    },
    {
      name: "names/uri-constraint-own-trust-domain",
      rule: "a URI constraint on the trust domain, leaf in it",
      leaf: await leaf(uriRoot),
      roots: [uriRoot],
      expect: "ok",
    },
    {
      name: "names/uri-constraint-foreign-trust-domain",
      rule: "a URI constraint on the trust domain, leaf of another",
      leaf: await leaf(uriRoot, { uris: ["spiffe://other.consul/ns/default/dc/dc1/svc/web"] }),
      roots: [uriRoot],
      expect: "refuse",
    },
    {
      name: "names/ip-constraint-uri-only-leaf",
      rule: "an IP subtree beside the DNS one; the leaf has no IP SAN",
      leaf: await leaf(ipRoot),
      roots: [ipRoot],
      expect: "refuse",
    },
    {
      name: "names/directory-name-constraint",
      rule: "a critical directoryName constraint (which Go does not evaluate either)",
      leaf: await leaf(dirRoot),
      roots: [dirRoot],
      expect: "refuse",
    },
    {
      name: "names/constraints-intersect-down-the-path",
      rule: "a leaf inside the intermediate's subtree but outside the root's",
      leaf: await leaf(narrowInt, { dns: ["web.example.com"] }),
      intermediates: [narrowInt],
      roots: [tdRoot],
      expect: "refuse",
    },
    {
      name: "names/intermediate-san-outside-root-constraint",
      rule: "name constraints also bind the intermediates' own names",
      leaf: await leaf(outsideInt),
      intermediates: [outsideInt],
      roots: [tdRoot],
      expect: "refuse",
    },
    {
      name: "alg/p256-leaf-signed-with-sha384",
      rule: "ECDSA P-256 with SHA-384",
      leaf: await leaf(r, { hash: "SHA-384" }),
      roots: [r],
      expect: "ok",
    },
    {
      name: "alg/p521-root",
      rule: "ECDSA P-521 with SHA-512",
      leaf: await leaf(p521Root),
      roots: [p521Root],
      expect: "ok",
    },
    {
      name: "alg/rsa-pss-root",
      rule: "RSASSA-PSS with SHA-256",
      leaf: await leaf(rsaPssRoot),
      roots: [rsaPssRoot],
      expect: "ok",
    },
    {
      name: "alg/ed25519-root",
      rule: "Ed25519",
      leaf: await leaf(edRoot),
      roots: [edRoot],
      expect: "ok",
    },
  ];
}

/**
 * Builds the corpus: ≥ 60 cases, fresh keys, fixed structure and times.
 * @returns the cases, names unique
 */
export async function buildCorpus(): Promise<CorpusCase[]> {
  const drafts = [
    ...await generatedValid(),
    ...await rotation(),
    ...await fixtures(),
    ...await generatedInvalid(),
    ...await edges(),
  ];
  return drafts.map(finish);
}
