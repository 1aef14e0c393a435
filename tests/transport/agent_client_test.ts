// The CLI's agent transport: HTTPS with a CA file, client certificates, CONSUL_TLS_SERVER_NAME,
// CONSUL_HTTP_SSL_VERIFY=false, and unix sockets — against a TLS (or unix) front of the double.
import assert from "node:assert/strict";
import net from "node:net";
import { AgentNetworkError } from "../../src/agent/errors.ts";
import { pipeSockets } from "../../src/net/pipe.ts";
import { AgentConfigError } from "../../src/agent/errors.ts";
import { createDenoAgentClient } from "../../src/transport/agent_client.ts";
import { devAgent } from "../_helpers.ts";
import { pki, pkiFiles, tlsFront } from "./_pki.ts";

Deno.test({
  name: "agent transport: HTTPS with a CA file, server name, client certificate, no-verify",
  sanitizeResources: false, // keep-alive sockets of node:https close asynchronously
  async fn() {
    await using dev = await devAgent();
    const p = await pki();
    const front = await tlsFront(dev.address, p.server, { ca: p.ca });
    const f = await pkiFiles(p);
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

Deno.test("namedEnv reads only the named variables; one outside --allow-env reads as unset", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-namedenv-" });
  const script = `${dir}/main.ts`;
  const src = new URL("../../src/transport/agent_client.ts", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { namedEnv } from "${src}";\n` +
      `console.log(JSON.stringify(namedEnv(["MESHGATE_A", "MESHGATE_B", "MESHGATE_UNSET"])));\n`,
  );
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-check",
        `--config=${new URL("../../deno.json", import.meta.url).pathname}`,
        "--allow-env=MESHGATE_A,MESHGATE_UNSET",
        "--allow-read",
        script,
      ],
      env: { MESHGATE_A: "a", MESHGATE_B: "b" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), { MESHGATE_A: "a" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createDenoAgentClient: an unreadable CA file or client certificate names its setting", async () => {
  const cases: [Record<string, string>, RegExp][] = [
    [
      { CONSUL_CACERT: "/nonexistent/ca.pem" },
      /^CONSUL_CACERT: cannot read \/nonexistent\/ca\.pem/,
    ],
    [
      { CONSUL_CLIENT_CERT: "/nonexistent/c.pem", CONSUL_CLIENT_KEY: "/nonexistent/k.pem" },
      /^CONSUL_CLIENT_CERT: cannot read/,
    ],
    [
      { CONSUL_CLIENT_KEY: "/nonexistent/k.pem" },
      /^CONSUL_CLIENT_CERT: a client certificate and its key/,
    ],
    [{ CONSUL_CAPATH: "/nonexistent/ca.d" }, /^CONSUL_CAPATH: cannot read/],
  ];
  for (const [env, re] of cases) {
    await assert.rejects(
      createDenoAgentClient({ env: { CONSUL_HTTP_ADDR: "https://127.0.0.1:1", ...env } }),
      (e) => e instanceof AgentConfigError && re.test(e.message),
      JSON.stringify(env),
    );
  }
});

Deno.test("createDenoAgentClient: a fetch given by the caller is used as is, even for TLS settings", async () => {
  const urls: string[] = [];
  const agent = await createDenoAgentClient({
    env: { CONSUL_HTTP_ADDR: "https://10.9.9.9:8501", CONSUL_HTTP_SSL_VERIFY: "false" },
    fetch: (input) => {
      urls.push(String(input));
      return Promise.resolve(Response.json({ Config: { Datacenter: "dc1", NodeName: "n" } }));
    },
  });
  try {
    await agent.request({ method: "GET", path: "/v1/agent/self", decode: (j) => j });
    assert.deepEqual(urls, ["https://10.9.9.9:8501/v1/agent/self"]);
  } finally {
    await agent.close();
  }
});

Deno.test({
  name:
    "agent transport: wrap puts a layer (the -workers relay) in front of the agent TLS transport",
  sanitizeResources: false, // keep-alive sockets of node:https close asynchronously
  async fn() {
    await using dev = await devAgent();
    const p = await pki();
    const front = await tlsFront(dev.address, p.server, { ca: p.ca });
    const f = await pkiFiles(p);
    const seen: string[] = [];
    try {
      const agent = await createDenoAgentClient({
        env: {
          CONSUL_HTTP_ADDR: `https://127.0.0.1:${front.port}`,
          CONSUL_CACERT: f.ca,
          CONSUL_TLS_SERVER_NAME: "server.dc1.consul",
          CONSUL_HTTP_TOKEN: "secret-token",
        },
      }, {
        wrap: (transport) => async (input, init) => {
          const headers = new Headers(init?.headers);
          seen.push(`${new URL(String(input)).pathname} ${headers.get("x-consul-token")}`);
          // The transport is the agent-TLS one: Deno's fetch would refuse this server's name.
          return await transport(input, init);
        },
      });
      assert.ok((await agent.roots()).value.Roots.length >= 1);
      assert.deepEqual(seen, ["/v1/agent/connect/ca/roots secret-token"]);
      await agent.close();
    } finally {
      await front.close();
    }
  },
});
