// The proxy against a real Consul agent that serves HTTPS only, with verify_incoming on: a CA,
// server and client certificates made by the test; the proxy configured by flags
// (-ca-file/-client-cert/-client-key) and by the CONSUL_* variables gets its leaf and roots and
// becomes ready; a wrong CA and a missing client certificate are refused with errors that name
// the agent's address and the TLS failure.
import assert from "node:assert/strict";
import { eventually, freePort, spawnLogged } from "../_helpers.ts";
import { echoServer, roundTrip, tlsClient } from "../e2e/_net.ts";
import { pki, pkiFiles } from "../transport/_pki.ts";
import { createDenoAgentClient } from "../../src/transport/agent_client.ts";
import { createNodeFetch } from "../../src/transport/node_fetch.ts";
import { announceSkip, consulBinary, hasLeaderAndRoots, spawnDevConsul } from "./_consul.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;

type Files = Awaited<ReturnType<typeof pkiFiles>>;

/** `consul agent -dev` with HTTP off and HTTPS on a free port, client certificates required. */
async function startHttpsConsul(files: Files) {
  const binary = consulBinary()!;
  const ports = {
    https: freePort(),
    serf_lan: freePort(),
    serf_wan: freePort(),
    server: freePort(),
  };
  const dataDir = await Deno.makeTempDir({ prefix: "meshgate-consul-https-" });
  const hcl = [
    `ports { http = -1, https = ${ports.https}, grpc = -1, grpc_tls = -1, dns = -1, ` +
    `serf_lan = ${ports.serf_lan}, serf_wan = ${ports.serf_wan}, server = ${ports.server} }`,
    `data_dir = "${dataDir}"`,
    `connect { enabled = true }`,
    `tls { defaults { ca_file = "${files.ca}", cert_file = "${files.serverCert}", ` +
    `key_file = "${files.serverKey}" } https { verify_incoming = true } }`,
  ];
  const url = `https://127.0.0.1:${ports.https}`;
  // Polled over mutual TLS: with verify_incoming nothing else gets an answer.
  const f = createNodeFetch({
    ca: await Deno.readTextFile(files.ca),
    cert: await Deno.readTextFile(files.cert),
    key: await Deno.readTextFile(files.key),
  });
  try {
    const { stop, logs } = await spawnDevConsul(
      binary,
      hcl.map((h) => `-hcl=${h}`),
      dataDir,
      () => hasLeaderAndRoots(url, f),
    );
    return { url, port: ports.https, stop, logs };
  } finally {
    f.close();
  }
}

const spawnProxy = (args: string[], env: Record<string, string> = {}) =>
  spawnLogged(
    Deno.execPath(),
    ["run", "-A", MAIN, "-admin-bind", "", "-log-json", "-drain-timeout", "1000", ...args],
    env,
  );

/**
 * Waits for "proxy ready", checks the leaf and roots were loaded, then stops it with SIGTERM while
 * its blocking queries wait on the agent: it must exit within the drain timeout (1 s) and slack.
 */
async function readyThenStop(p: ReturnType<typeof spawnProxy>, what: string) {
  let sentAt = 0;
  try {
    await eventually(
      () => p.logs().includes('"proxy ready"') || p.logs().includes('"cannot start proxy"'),
      30_000,
      `the proxy (${what}) to be ready`,
    );
    assert.ok(p.logs().includes('"proxy ready"'), `${what}: not ready:\n${p.logs()}`);
    assert.match(p.logs(), /"leaf certificate loaded"/, what);
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    sentAt = performance.now();
    p.child.kill("SIGTERM");
  }
  const killer = setTimeout(() => p.child.kill("SIGKILL"), 20_000);
  try {
    assert.equal(await p.exited(), 0, `${what}: exit code; logs:\n${p.logs().slice(-2000)}`);
  } finally {
    clearTimeout(killer);
  }
  const tookMs = performance.now() - sentAt;
  assert.ok(tookMs < 4000, `${what}: exited ${Math.round(tookMs)} ms after SIGTERM`);
}

/** Runs the proxy with settings the agent refuses; returns its log after it exits 1. */
async function refused(args: string[], env: Record<string, string> = {}) {
  const p = spawnProxy(args, env);
  const killer = setTimeout(() => p.child.kill("SIGKILL"), 30_000);
  try {
    assert.equal(await p.exited(), 1, `exits 1 at once; logs:\n${p.logs()}`);
  } finally {
    clearTimeout(killer);
  }
  return p.logs();
}

Deno.test({
  name: "https agent (real Consul, verify_incoming): the proxy by flags and by CONSUL_* variables",
  ignore: !consulBinary(),
  sanitizeResources: false, // the agent and proxies are child processes with pipes
  async fn(t) {
    const p = await pki({ withLoopback: true });
    const files = await pkiFiles(p);
    const other = await pkiFiles(await pki({ withLoopback: true }));
    const consul = await startHttpsConsul(files);
    const app = await echoServer();
    const address = `https://127.0.0.1:${consul.port}`;
    const tlsFlags = ["-ca-file", files.ca, "-client-cert", files.cert, "-client-key", files.key];
    const agent = await createDenoAgentClient({
      address,
      caFile: files.ca,
      clientCert: files.cert,
      clientKey: files.key,
      env: {},
    });
    try {
      const publicPort = freePort();
      await agent.register({
        ID: "web-1",
        Name: "web",
        Port: app.port,
        Connect: { SidecarService: { Port: publicPort } },
      });

      await t.step("-ca-file, -client-cert, -client-key: ready, serves mTLS", async () => {
        const proxy = spawnProxy(["-sidecar-for", "web-1", "-http-addr", address, ...tlsFlags]);
        try {
          await eventually(() => proxy.logs().includes('"proxy ready"'), 30_000, "ready");
          // Its public listener presents the leaf it got from the agent and accepts a mesh peer.
          const leaf = (await agent.leaf("api")).value;
          const roots = (await agent.roots()).value.Roots.map((r) => r.RootCert);
          const c = await tlsClient(publicPort, {
            cert: leaf.CertPEM,
            key: leaf.PrivateKeyPEM,
            ca: roots,
          });
          assert.equal(new TextDecoder().decode(await roundTrip(c, "over https")), "over https");
        } finally {
          await readyThenStop(proxy, "flags");
        }
      });

      await t.step(
        "CONSUL_HTTP_ADDR + CONSUL_HTTP_SSL, CONSUL_CACERT, CONSUL_CLIENT_*",
        async () => {
          const proxy = spawnProxy(["-sidecar-for", "web-1"], {
            CONSUL_HTTP_ADDR: `127.0.0.1:${consul.port}`,
            CONSUL_HTTP_SSL: "true",
            CONSUL_CACERT: files.ca,
            CONSUL_CLIENT_CERT: files.cert,
            CONSUL_CLIENT_KEY: files.key,
          });
          await readyThenStop(proxy, "CONSUL_* variables");
        },
      );

      await t.step("a wrong CA is refused, naming the address and the TLS failure", async () => {
        const logs = await refused([
          "-sidecar-for",
          "web-1",
          "-http-addr",
          address,
          "-ca-file",
          other.ca,
          "-client-cert",
          files.cert,
          "-client-key",
          files.key,
        ]);
        assert.ok(logs.includes(`${address}: TLS handshake failed`), logs);
        assert.match(logs, /certificate is not trusted/);
        assert.match(logs, /CONSUL_CACERT/);
      });

      await t.step("verify_incoming is on: no client certificate, refused", async () => {
        const logs = await refused(["-sidecar-for", "web-1", "-http-addr", address], {
          CONSUL_CACERT: files.ca,
        });
        assert.ok(logs.includes(`${address}: TLS handshake failed`), logs);
        assert.match(logs, /requires a client certificate/);
      });
    } finally {
      await agent.close();
      await app.close();
      await consul.stop();
      await Deno.remove(files.dir, { recursive: true });
      await Deno.remove(other.dir, { recursive: true });
    }
  },
});
if (!consulBinary()) announceSkip("tests/integration/https_test.ts");
