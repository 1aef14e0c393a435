/**
 * The test double's Connect CA: the built-in Consul provider's certificates, made with WebCrypto
 * ECDSA and `@peculiar/x509` — roots with the `spiffe://<td>` URI SAN, P-256 leaves with no
 * subject and one SPIFFE URI SAN, colon-hex serials from one counter, and rotation with a
 * cross-signed certificate, as Consul does it.
 * @module
 */
import { x509 } from "../trust/_x509.ts";
import { parseCertificate } from "../trust/certificate.ts";
import { exportSec1Pem, importEcPrivateKeyPem } from "../trust/keys.ts";
import { colonHex } from "../trust/pem.ts";
import { formatSpiffeId, serviceSpiffeId } from "../trust/spiffe.ts";
import type { CARoot, LeafCert } from "../agent/types.ts";

const MINUTE = 60_000;

/** Options of a {@linkcode ConnectCA}. */
export interface ConnectCAOptions {
  /** Cluster ID (a UUID); the trust domain is `<id>.consul`. Default: random. */
  clusterId?: string;
  /** Datacenter written in leaf SPIFFE IDs. @default {"dc1"} */
  datacenter?: string;
  /** Leaf lifetime in ms. @default {72 hours} */
  leafTtlMs?: number;
  /** Root lifetime in ms. @default {10 years} */
  rootTtlMs?: number;
}

/** What a rotation rotates to: imported key material, or a fresh EC key of a given size. */
export type RotationMaterial =
  | { privateKeyPem: string; rootCertPem: string }
  | { keyBits: 256 | 384 | number };

interface RootRecord {
  root: CARoot;
  key: CryptoKey;
  cert: x509.X509Certificate;
  keyId: Uint8Array;
}

/** A leaf as the double stores it: the wire body plus its parsed validity. */
export interface IssuedLeaf {
  /** The wire body for `/v1/agent/connect/ca/leaf/:service` (indexes set by the caller). */
  cert: Omit<LeafCert, "CreateIndex" | "ModifyIndex">;
  /** NotBefore. */
  validAfter: Date;
  /** NotAfter. */
  validBefore: Date;
  /** AKID of the leaf (= the signing root's `SigningKeyID`). */
  signingKeyId: string;
}

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

async function keyId(publicKey: CryptoKey): Promise<Uint8Array> {
  const spki = await crypto.subtle.exportKey("spki", publicKey);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", spki));
}

function serialHex(n: bigint): string {
  let hex = n.toString(16);
  if (hex.length % 2) hex = "0" + hex;
  return hex;
}

function randomBase36(n: number): string {
  const chars = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return [...bytes].map((b) => chars[b % 36]).join("");
}

function seconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * A Connect CA in the shape of Consul's built-in provider.
 *
 * @example
 * ```ts
 * import { ConnectCA } from "@meshgate/meshgate/devagent";
 * const ca = await ConnectCA.create({ clusterId: "11111111-2222-3333-4444-555555555555" });
 * const leaf = await ca.signLeaf("web");
 * console.log(leaf.cert.ServiceURI);
 * // spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web
 * ```
 */
export class ConnectCA {
  /** The cluster ID. */
  readonly clusterId: string;
  /** `<cluster-id>.consul`. */
  readonly trustDomain: string;
  /** Datacenter of issued leaves. */
  readonly datacenter: string;
  /** Leaf lifetime in ms; changeable through the CA configuration. */
  leafTtlMs: number;
  readonly #rootTtlMs: number;
  #serial = 0n;
  #roots: RootRecord[] = [];

  private constructor(options: ConnectCAOptions) {
    this.clusterId = (options.clusterId ?? crypto.randomUUID()).toLowerCase();
    this.trustDomain = `${this.clusterId}.consul`;
    this.datacenter = options.datacenter ?? "dc1";
    this.leafTtlMs = options.leafTtlMs ?? 72 * 60 * MINUTE;
    this.#rootTtlMs = options.rootTtlMs ?? 87600 * 60 * MINUTE;
  }

  /** Creates a CA with a fresh P-256 root. */
  static async create(options: ConnectCAOptions = {}): Promise<ConnectCA> {
    const ca = new ConnectCA(options);
    ca.#roots.push(await ca.#newRoot());
    return ca;
  }

  /** Every trusted root as Consul 1.22 serves it: sorted by ID (not by activation). */
  get roots(): CARoot[] {
    return this.#roots.map((r) => r.root).sort((a, b) => a.ID < b.ID ? -1 : a.ID > b.ID ? 1 : 0);
  }

  /** The active root. */
  get activeRoot(): CARoot {
    return this.#active.root;
  }

  get #active(): RootRecord {
    return this.#roots.find((r) => r.root.Active)!;
  }

  #nextSerial(): bigint {
    this.#serial += 1n;
    return this.#serial;
  }

  async #newRoot(
    imported?: { key: CryptoKeyPair; cert?: x509.X509Certificate },
    keyBits = 256,
  ): Promise<RootRecord> {
    const curve = keyBits === 384 ? "P-384" : "P-256";
    const keys = imported?.key ??
      await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, [
        "sign",
        "verify",
      ]) as CryptoKeyPair;
    const id = await keyId(keys.publicKey);
    let cert = imported?.cert;
    if (!cert) {
      const notBefore = seconds(new Date(Date.now() - MINUTE));
      const cn = `pri-${randomBase36(8)}.consul.ca.${this.clusterId.slice(0, 8)}.consul`;
      cert = await x509.X509CertificateGenerator.create({
        serialNumber: serialHex(this.#nextSerial()),
        subject: `CN=${cn}`,
        issuer: `CN=${cn}`,
        notBefore,
        notAfter: seconds(new Date(notBefore.getTime() + this.#rootTtlMs)),
        signingAlgorithm: SIGN,
        publicKey: keys.publicKey,
        signingKey: keys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(true, undefined, true),
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign |
              x509.KeyUsageFlags.digitalSignature,
            true,
          ),
          new x509.SubjectKeyIdentifierExtension(id.toHex()),
          new x509.AuthorityKeyIdentifierExtension(id.toHex()),
          new x509.SubjectAlternativeNameExtension([{
            type: "url",
            value: `spiffe://${this.trustDomain}`,
          }]),
        ],
      });
    }
    const info = await parseCertificate(new Uint8Array(cert.rawData));
    // An imported root keeps its own key ID: leaves' AKID must equal the root's SKID.
    const signingKeyId = info.subjectKeyId
      ? Uint8Array.fromHex(info.subjectKeyId.replaceAll(":", ""))
      : id;
    const serialBig = BigInt("0x" + info.serial.replaceAll(":", ""));
    const root: CARoot = {
      ID: info.sha1Fingerprint,
      Name: "Consul CA Primary Cert",
      SerialNumber: Number(serialBig),
      SigningKeyID: colonHex(signingKeyId),
      ExternalTrustDomain: this.clusterId,
      NotBefore: rfc3339(info.notBefore),
      NotAfter: rfc3339(info.notAfter),
      RootCert: cert.toString("pem").replaceAll("\r\n", "\n").trimEnd() + "\n",
      IntermediateCerts: null,
      Active: true,
      PrivateKeyType: info.keyType,
      PrivateKeyBits: info.keyBits,
      CreateIndex: 0,
      ModifyIndex: 0,
    };
    return { root, key: keys.privateKey, cert, keyId: signingKeyId };
  }

  /**
   * Rotates to a new root, as a CA configuration change does: the new root becomes active and
   * is appended last, the old one stays trusted with `Active: false`, and the new root's
   * `IntermediateCerts` starts with the new root cross-signed by the old key (valid 7 days).
   * With `privateKeyPem` + `rootCertPem`, that key material becomes the new root; with
   * `keyBits`, a fresh EC key of that size (Consul's `PrivateKeyBits` change).
   */
  async rotate(material?: RotationMaterial): Promise<CARoot> {
    const old = this.#active;
    let imported: { key: CryptoKeyPair; cert?: x509.X509Certificate } | undefined;
    if (material && "privateKeyPem" in material) {
      const { key } = await importEcPrivateKeyPem(material.privateKeyPem);
      const cert = new x509.X509Certificate(material.rootCertPem);
      const publicKey = await cert.publicKey.export(
        { name: "ECDSA", namedCurve: (cert.publicKey.algorithm as EcKeyAlgorithm).namedCurve },
        ["verify"],
      );
      imported = { key: { privateKey: key, publicKey }, cert };
    }
    const next = await this.#newRoot(
      imported,
      material && "keyBits" in material ? material.keyBits : 256,
    );
    const now = Date.now();
    const cross = await x509.X509CertificateGenerator.create({
      serialNumber: serialHex(this.#nextSerial()),
      subject: next.cert.subjectName,
      issuer: old.cert.subjectName,
      notBefore: seconds(new Date(now - MINUTE)),
      notAfter: seconds(new Date(now + 7 * 24 * 60 * MINUTE)),
      signingAlgorithm: SIGN,
      publicKey: next.cert.publicKey,
      signingKey: old.key,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign |
            x509.KeyUsageFlags.digitalSignature,
          true,
        ),
        new x509.SubjectKeyIdentifierExtension(next.keyId.toHex()),
        new x509.AuthorityKeyIdentifierExtension(old.keyId.toHex()),
        new x509.SubjectAlternativeNameExtension([{
          type: "url",
          value: `spiffe://${this.trustDomain}`,
        }]),
      ],
    });
    next.root.IntermediateCerts = [cross.toString("pem").replaceAll("\r\n", "\n").trimEnd() + "\n"];
    old.root.Active = false;
    this.#roots.push(next);
    return next.root;
  }

  /** Drops inactive roots (Consul prunes them 2 × leaf TTL after a rotation). */
  pruneInactive(): void {
    this.#roots = this.#roots.filter((r) => r.root.Active);
  }

  /**
   * Signs a leaf for a service with the active root: a fresh P-256 key, no subject, one SPIFFE
   * URI SAN, NotBefore one minute in the past, `CertPEM` = leaf + the active root's
   * intermediates.
   */
  async signLeaf(
    service: string,
    options: { ttlMs?: number; notBefore?: Date } = {},
  ): Promise<IssuedLeaf> {
    const signer = this.#active;
    const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]) as CryptoKeyPair;
    const uri = formatSpiffeId(
      serviceSpiffeId({ trustDomain: this.trustDomain, datacenter: this.datacenter, service }),
    );
    // Like Consul (checked by the contract suite): NotBefore a minute back, NotAfter = NotBefore
    // + TTL, so a TTL under a minute issues an expired leaf (Consul's minimum TTL is 1 h).
    const notBefore = seconds(options.notBefore ?? new Date(Date.now() - MINUTE));
    const notAfter = seconds(new Date(notBefore.getTime() + (options.ttlMs ?? this.leafTtlMs)));
    const serial = this.#nextSerial();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialHex(serial),
      subject: "",
      issuer: signer.cert.subjectName,
      notBefore,
      notAfter,
      signingAlgorithm: SIGN,
      publicKey: keys.publicKey,
      signingKey: signer.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment |
            x509.KeyUsageFlags.dataEncipherment | x509.KeyUsageFlags.keyAgreement,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.clientAuth,
          x509.ExtendedKeyUsage.serverAuth,
        ]),
        new x509.SubjectKeyIdentifierExtension((await keyId(keys.publicKey)).toHex()),
        new x509.AuthorityKeyIdentifierExtension(signer.keyId.toHex()),
        // Critical, as Go's x509 marks the SAN of a certificate with an empty subject (RFC 5280
        // §4.2.1.6) and so as Consul's leaves carry it.
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: uri }], true),
      ],
    });
    const leafPem = cert.toString("pem").replaceAll("\r\n", "\n").trimEnd() + "\n";
    return {
      cert: {
        SerialNumber: colonHex(Uint8Array.fromHex(serialHex(serial))),
        CertPEM: leafPem + (signer.root.IntermediateCerts ?? []).join(""),
        PrivateKeyPEM: await exportSec1Pem(keys.privateKey),
        Service: service,
        ServiceURI: uri,
        ValidAfter: rfc3339(notBefore),
        ValidBefore: rfc3339(notAfter),
      },
      validAfter: notBefore,
      validBefore: notAfter,
      signingKeyId: signer.root.SigningKeyID,
    };
  }

  /**
   * Signs a certificate for any SPIFFE URI with the active root (tests use it for agent or
   * foreign-domain identities, and for expired leaves).
   */
  async signIdentity(
    uri: string,
    options: {
      notBefore?: Date;
      notAfter?: Date;
      /** Deliberately weak cryptography, for tests of refusals. */
      weak?: "rsa-1024" | "sha-1";
    } = {},
  ): Promise<{ certPem: string; keyPem: string }> {
    const signer = this.#active;
    const keys = options.weak === "rsa-1024"
      ? await crypto.subtle.generateKey(
        {
          name: "RSASSA-PKCS1-v1_5",
          modulusLength: 1024,
          publicExponent: new Uint8Array([1, 0, 1]),
          hash: "SHA-256",
        },
        true,
        ["sign", "verify"],
      ) as CryptoKeyPair
      : await crypto.subtle.generateKey(EC, true, ["sign", "verify"]) as CryptoKeyPair;
    const notBefore = options.notBefore ?? new Date(Date.now() - MINUTE);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialHex(this.#nextSerial()),
      subject: "",
      issuer: signer.cert.subjectName,
      notBefore,
      notAfter: options.notAfter ?? new Date(notBefore.getTime() + this.leafTtlMs),
      signingAlgorithm: options.weak === "sha-1" ? { ...SIGN, hash: "SHA-1" } : SIGN,
      publicKey: keys.publicKey,
      signingKey: signer.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.clientAuth,
          x509.ExtendedKeyUsage.serverAuth,
        ]),
        new x509.AuthorityKeyIdentifierExtension(signer.keyId.toHex()),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: uri }], true),
      ],
    });
    return {
      certPem: cert.toString("pem").replaceAll("\r\n", "\n").trimEnd() + "\n" +
        (signer.root.IntermediateCerts ?? []).join(""),
      keyPem: options.weak === "rsa-1024"
        ? x509.PemConverter.encode(
          await crypto.subtle.exportKey("pkcs8", keys.privateKey),
          "PRIVATE KEY",
        )
        : await exportSec1Pem(keys.privateKey),
    };
  }
}
