// Certificates for agent-TLS tests: a CA ("Consul Agent CA"), a server certificate for
// `server.dc1.consul` (and optionally 127.0.0.1), and a client certificate, made with our x509 code.
import net from "node:net";
import tls from "node:tls";
import { pipeSockets } from "../../src/net/pipe.ts";
import { x509 } from "../../src/trust/_x509.ts";

const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

async function pem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** A certificate and its key, both PEM. */
export interface Issued {
  cert: string;
  key: string;
}

/** The test PKI. */
export interface Pki {
  ca: string;
  server: Issued;
  client: Issued;
}

/**
 * A CA, a server certificate for `server.dc1.consul` (plus `localhost` and 127.0.0.1 with
 * `withLoopback`), and a client certificate (client and server auth, as Consul's TLS docs make).
 */
export async function pki(options: { withLoopback?: boolean } = {}): Promise<Pki> {
  const caKeys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=Consul Agent CA",
    keys: caKeys,
    signingAlgorithm: alg,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3600_000),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
    ],
  });
  const issue = async (cn: string, serial: string, names: { type: string; value: string }[]) => {
    const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: `CN=${cn}`,
      issuer: ca.subject,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: alg,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
      extensions: [
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        ...(names.length
          ? [new x509.SubjectAlternativeNameExtension(names as x509.JsonGeneralNames)]
          : []),
      ],
    });
    return { cert: cert.toString("pem"), key: await pem(keys.privateKey) };
  };
  const serverNames = [{ type: "dns", value: "server.dc1.consul" }];
  if (options.withLoopback) {
    serverNames.push({ type: "dns", value: "localhost" }, { type: "ip", value: "127.0.0.1" });
  }
  return {
    ca: ca.toString("pem"),
    server: await issue("server.dc1.consul", "02", serverNames),
    client: await issue("client.dc1.consul", "03", []),
  };
}

/** Writes the CA, client certificate and key (and the server's pair) to a new temp directory. */
export async function pkiFiles(p: Pki) {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-pki-" });
  const write = async (name: string, text: string) => {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    return `${dir}/${name}`;
  };
  return {
    dir,
    ca: await write("ca.pem", p.ca),
    cert: await write("client.pem", p.client.cert),
    key: await write("client-key.pem", p.client.key),
    serverCert: await write("server.pem", p.server.cert),
    serverKey: await write("server-key.pem", p.server.key),
  };
}

/** An agent behind TLS, from {@linkcode tlsFront}. */
export interface TlsFront {
  /** The front's port on 127.0.0.1. */
  port: number;
  /** `https://127.0.0.1:<port>`. */
  address: string;
  /** With `ca`: whether each client's certificate verified, in connection order. */
  clientCerts: boolean[];
  /** Stops listening (open connections end with their peers). */
  close(): Promise<void>;
}

/**
 * Terminates TLS with `server`'s certificate on 127.0.0.1:0 and forwards each connection to
 * `target` (`host:port`, e.g. the double's address). With `ca`, it asks for a client certificate
 * (not required) and records whether it verified against `ca`.
 */
export async function tlsFront(
  target: string,
  server: Issued,
  options: { ca?: string } = {},
): Promise<TlsFront> {
  const [host, port] = target.split(":");
  const clientCerts: boolean[] = [];
  const front = tls.createServer({
    cert: server.cert,
    key: server.key,
    allowHalfOpen: true,
    ...(options.ca ? { ca: [options.ca], requestCert: true, rejectUnauthorized: false } : {}),
  }, (socket) => {
    if (options.ca) clientCerts.push(socket.authorized);
    pipeSockets(socket, net.connect({ host, port: Number(port), allowHalfOpen: true }));
  });
  front.on("tlsClientError", () => {});
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
  const listening = (front.address() as net.AddressInfo).port;
  return {
    port: listening,
    address: `https://127.0.0.1:${listening}`,
    clientCerts,
    close: () => new Promise<void>((r) => front.close(() => r())),
  };
}
