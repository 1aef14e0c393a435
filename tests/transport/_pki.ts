// Certificates for agent-TLS tests: a CA ("Consul Agent CA"), a server certificate for
// `server.dc1.consul` (and optionally 127.0.0.1), and a client certificate, made with our x509 code.
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
