// The CLI's agent transport: HTTPS with a CA file, client certificates, CONSUL_TLS_SERVER_NAME,
// CONSUL_HTTP_SSL_VERIFY=false, and unix sockets — against a TLS (or unix) front of the double.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { x509 } from "../../src/trust/_x509.ts";
import { AgentNetworkError, pipeSockets } from "../../mod.ts";
import { createDenoAgentClient } from "../../src/transport/agent_client.ts";
import { devAgent } from "../_helpers.ts";

const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

async function pem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** A CA, a server certificate for `server.dc1.consul` only, and a client certificate. */
async function pki() {
  const caKeys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=Consul Agent CA",
    keys: caKeys,
    signingAlgorithm: alg,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3600_000),
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const issue = async (cn: string, serial: string, san?: string) => {
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
      extensions: san
        ? [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: san }])]
        : [],
    });
    return { cert: cert.toString("pem"), key: await pem(keys.privateKey) };
  };
  return {
    ca: ca.toString("pem"),
    server: await issue("server.dc1.consul", "02", "server.dc1.consul"),
    client: await issue("client.dc1.consul", "03"),
  };
}

/** Terminates TLS (asking for a client certificate) and forwards to the double. */
async function tlsFront(target: number, p: Awaited<ReturnType<typeof pki>>) {
  const clientCerts: boolean[] = [];
  const server = tls.createServer({
    cert: p.server.cert,
    key: p.server.key,
    ca: [p.ca],
    requestCert: true,
    rejectUnauthorized: false,
    allowHalfOpen: true,
  }, (socket) => {
    clientCerts.push(socket.authorized);
    const up = net.connect({ host: "127.0.0.1", port: target, allowHalfOpen: true });
    pipeSockets(socket, up);
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    clientCerts,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function files(p: Awaited<ReturnType<typeof pki>>) {
  const dir = await Deno.makeTempDir();
  const write = async (name: string, text: string) => {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    return `${dir}/${name}`;
  };
  return {
    dir,
    ca: await write("ca.pem", p.ca),
    cert: await write("client.pem", p.client.cert),
    key: await write("client-key.pem", p.client.key),
  };
}

Deno.test({
  name: "agent transport: HTTPS with a CA file, server name, client certificate, no-verify",
  sanitizeResources: false, // keep-alive sockets of node:https close asynchronously
  async fn() {
    await using dev = await devAgent();
    const p = await pki();
    const front = await tlsFront(Number(dev.address.split(":")[1]), p);
    const f = await files(p);
    const addr = `https://127.0.0.1:${front.port}`;
    try {
      // The certificate names server.dc1.consul, not 127.0.0.1: verified against that name.
      const named = await createDenoAgentClient({
        env: {
          CONSUL_HTTP_ADDR: addr,
          CONSUL_CACERT: f.ca,
          CONSUL_TLS_SERVER_NAME: "server.dc1.consul",
          CONSUL_CLIENT_CERT: f.cert,
          CONSUL_CLIENT_KEY: f.key,
        },
      });
      assert.ok((await named.roots()).value.Roots.length >= 1);
      assert.equal(front.clientCerts.at(-1), true, "the client certificate was presented");
      await named.close();

      // Without the server name the address is checked, and does not match: a clear error.
      const mismatch = await createDenoAgentClient({
        env: { CONSUL_HTTP_ADDR: addr, CONSUL_CACERT: f.ca },
      });
      const err = await mismatch.roots().catch((e) => e);
      assert.ok(err instanceof AgentNetworkError, String(err));
      assert.match(err.message, /127\.0\.0\.1|altnames|IP/i);
      await mismatch.close();

      // Without the CA the certificate is untrusted, unless verification is off.
      const untrusted = await createDenoAgentClient({ env: { CONSUL_HTTP_ADDR: addr } });
      assert.ok(await untrusted.roots().catch((e) => e) instanceof AgentNetworkError);
      await untrusted.close();
      const insecure = await createDenoAgentClient({
        env: { CONSUL_HTTP_ADDR: addr, CONSUL_HTTP_SSL_VERIFY: "false" },
      });
      assert.ok((await insecure.roots()).value.Roots.length >= 1);
      await insecure.close();

      await assert.rejects(
        createDenoAgentClient({ env: { CONSUL_HTTP_ADDR: addr, CONSUL_CLIENT_CERT: f.cert } }),
        /CONSUL_CLIENT_KEY.*together/,
      );
    } finally {
      await front.close();
      await Deno.remove(f.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "agent transport: unix:// addresses reach the agent over a unix socket",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const dir = await Deno.makeTempDir();
    const path = `${dir}/consul.sock`;
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      const up = net.connect({
        host: "127.0.0.1",
        port: Number(dev.address.split(":")[1]),
        allowHalfOpen: true,
      });
      pipeSockets(s, up);
    });
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const client = await createDenoAgentClient({ env: { CONSUL_HTTP_ADDR: `unix://${path}` } });
      assert.ok((await client.roots()).value.Roots.length >= 1);
      // Blocking queries work too: a watch sees a change.
      await client.register({ ID: "db-1", Name: "db", Port: 1 });
      const it = client.watchService("db-1").stream()[Symbol.asyncIterator]();
      assert.equal((await it.next()).value?.value.Port, 1);
      const pending = it.next();
      await client.register({ ID: "db-1", Name: "db", Port: 2 });
      assert.equal((await pending).value?.value.Port, 2);
      await it.return?.();
      await client.close();
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      await Deno.remove(dir, { recursive: true });
    }
  },
});
