// Fixtures of the native-TLS leg's tests: a small PKI of our own (roots, intermediates, SPIFFE
// leaves) made with @peculiar/x509, TlsMaterial from it, and an mTLS server on loopback
// (node:tls, as meshgate's inbound is). Imports the modules under test directly, not mod.ts.
import net from "node:net";
import tls from "node:tls";
import type { CARoot, CARootList } from "../../src/agent/types.ts";
import { x509 } from "../../src/trust/_x509.ts";
import { TlsMaterial } from "../../src/trust/material.ts";

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
const HOUR = 3600_000;

/** `<uuid>.consul`, a trust domain of our own. */
export const TD = "7e1f3c2a-1b2c-4d5e-8f90-a1b2c3d4e5f6.consul";

/** A service's SPIFFE ID in {@linkcode TD}. */
export function spiffe(service: string, dc = "dc1", td = TD): string {
  return `spiffe://${td}/ns/default/dc/${dc}/svc/${service}`;
}

/** A certificate with its private key. */
export interface Issued {
  cert: x509.X509Certificate;
  /** The certificate alone, PEM. */
  pem: string;
  /** PKCS#8 PEM of its key. */
  keyPem: string;
  key: CryptoKey;
}

function pemOf(cert: x509.X509Certificate): string {
  return cert.toString("pem").replaceAll("\r\n", "\n").trimEnd() + "\n";
}

/** PKCS#8 PEM of a private key (extractable). */
export async function keyToPem(key: CryptoKey): Promise<string> {
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
  const b64 = der.toBase64().replace(/.{64}/g, "$&\n").trimEnd();
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

/** Issues a certificate: a CA (root when `issuer` is absent) or a SPIFFE leaf. */
export async function issue(o: {
  issuer?: Issued;
  ca?: boolean;
  name?: string;
  uri?: string;
  notBefore?: Date;
  notAfter?: Date;
}): Promise<Issued> {
  const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]) as CryptoKeyPair;
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
  const extensions: x509.Extension[] = [ski];
  if (o.ca) {
    extensions.push(new x509.BasicConstraintsExtension(true, undefined, true));
    extensions.push(
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign |
          x509.KeyUsageFlags.digitalSignature,
        true,
      ),
    );
  } else {
    extensions.push(
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
    );
    extensions.push(
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
    );
  }
  if (o.issuer) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(o.issuer.cert));
  }
  const uri = o.uri ?? (o.ca ? `spiffe://${TD}` : undefined);
  if (uri) {
    extensions.push(new x509.SubjectAlternativeNameExtension([{ type: "url", value: uri }], !o.ca));
  }
  const subject = o.ca ? `CN=${o.name ?? "meshgate test CA"}` : "";
  const notBefore = o.notBefore ?? new Date(Date.now() - HOUR);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "01" + crypto.getRandomValues(new Uint8Array(8)).toHex(),
    subject,
    issuer: o.issuer ? o.issuer.cert.subject : subject,
    notBefore,
    notAfter: o.notAfter ?? new Date(notBefore.getTime() + 48 * HOUR),
    signingAlgorithm: SIGN,
    publicKey: keys.publicKey,
    signingKey: o.issuer?.key ?? keys.privateKey,
    extensions,
  });
  return { cert, pem: pemOf(cert), keyPem: await keyToPem(keys.privateKey), key: keys.privateKey };
}

/** A root list as the agent serves it: `roots` trusted, each with the intermediates it lists. */
export function rootList(
  roots: { pem: string; intermediates?: string[] }[],
  trustDomain = TD,
): CARootList {
  const list: CARoot[] = roots.map((r, i) => ({
    ID: `root-${i}`,
    Name: `root ${i}`,
    SerialNumber: i + 1,
    SigningKeyID: "",
    NotBefore: "",
    NotAfter: "",
    RootCert: r.pem,
    IntermediateCerts: r.intermediates ?? null,
    Active: i === roots.length - 1,
    CreateIndex: 1,
    ModifyIndex: 1,
  }));
  return { ActiveRootID: list.at(-1)?.ID ?? "", TrustDomain: trustDomain, Roots: list };
}

/** Our side: `service`'s material, a leaf from `root` and the given roots list. */
export async function materialFor(
  roots: CARootList,
  leaf: { certPem: string; keyPem: string },
): Promise<TlsMaterial> {
  const m = new TlsMaterial();
  await m.setRoots(roots);
  await m.setLeaf(
    {
      SerialNumber: "01",
      CertPEM: leaf.certPem,
      PrivateKeyPEM: leaf.keyPem,
      Service: "web",
      ServiceURI: spiffe("web"),
      ValidAfter: "",
      ValidBefore: "",
      CreateIndex: 1,
      ModifyIndex: 1,
    } as Parameters<TlsMaterial["setLeaf"]>[0],
  );
  return m;
}

/** A web leaf and a db leaf from one root, and web's material. */
export async function simpleMesh() {
  const root = await issue({ ca: true });
  const web = await issue({ issuer: root, uri: spiffe("web") });
  const db = await issue({ issuer: root, uri: spiffe("db") });
  const material = await materialFor(rootList([{ pem: root.pem }]), {
    certPem: web.pem,
    keyPem: web.keyPem,
  });
  return { root, web, db, material };
}

/** What a {@linkcode meshServer} saw of one connection. */
export interface Seen {
  /** The SNI the client sent, or `false`/`undefined`. */
  servername: string | false | undefined;
  /** The client certificate's URI SAN. */
  clientUri?: string;
  /** Bytes it received. */
  received: number;
}

/**
 * An mTLS server on 127.0.0.1:0 presenting `chainPem` (leaf first) with `keyPem`, asking for a
 * client certificate (not requiring one); `serve` decides what it does with each connection.
 */
export async function meshServer(
  chainPem: string,
  keyPem: string,
  roots: string[],
  serve: (s: tls.TLSSocket, seen: Seen) => void = (s) => s.end("hello from the server"),
) {
  const seen: Seen[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({
    cert: chainPem,
    key: keyPem,
    ca: roots,
    requestCert: true,
    rejectUnauthorized: false,
    allowHalfOpen: true,
  } as tls.TlsOptions, (s) => {
    sockets.add(s);
    const peer = s.getPeerCertificate();
    const record: Seen = {
      servername: (s as tls.TLSSocket & { servername?: string | false }).servername,
      clientUri: peer?.subjectaltname?.replace(/^URI:/, ""),
      received: 0,
    };
    seen.push(record);
    s.on("data", (d: Uint8Array) => (record.received += d.length));
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    serve(s, record);
  });
  server.on("tlsClientError", () => {});
  // A TLS 1.3 client may be done (and gone) before the server has seen its handshake finish:
  // those connections never reach the handler, so they are tracked from the TCP accept.
  const raw = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => {
    raw.add(s);
    s.on("close", () => raw.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  let handshakes = 0;
  server.on("secureConnection", () => handshakes++);
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    handshakes: () => handshakes,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      for (const s of raw) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** An endpoint of `service` on loopback. */
export function endpoint(port: number, service = "db", datacenter?: string) {
  return { address: "127.0.0.1", port, service, datacenter, id: `node/${service}-sidecar-proxy` };
}

/** Reads `conn` to its end, as text. */
export async function readAll(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(16 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}
