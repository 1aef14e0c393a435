import assert from "node:assert/strict";
import { AgentClient, AgentConfigError, resolveAgentConfig } from "../../mod.ts";

Deno.test("agent config reads CONSUL_HTTP_ADDR in every form the Consul CLI accepts", () => {
  const cases: [string, string, string][] = [
    ["127.0.0.1:8500", "http://127.0.0.1:8500", "http"],
    ["http://10.0.0.1:8500", "http://10.0.0.1:8500", "http"],
    ["https://consul.local:8501", "https://consul.local:8501", "https"],
    ["[::1]:8500", "http://[::1]:8500", "http"],
  ];
  for (const [addr, url, transport] of cases) {
    const { config } = resolveAgentConfig({}, { CONSUL_HTTP_ADDR: addr });
    assert.equal(config.baseUrl, url, addr);
    assert.equal(config.transport, transport, addr);
  }
  const unix = resolveAgentConfig({}, { CONSUL_HTTP_ADDR: "unix:///var/run/consul.sock" });
  assert.equal(unix.config.transport, "unix");
  assert.equal(unix.config.socketPath, "/var/run/consul.sock");
  assert.equal(resolveAgentConfig({}, {}).config.baseUrl, "http://127.0.0.1:8500");
});

Deno.test("agent config: CONSUL_HTTP_SSL turns host:port into https; explicit options win", () => {
  const env = {
    CONSUL_HTTP_ADDR: "10.1.1.1:8501",
    CONSUL_HTTP_SSL: "true",
    CONSUL_HTTP_SSL_VERIFY: "false",
    CONSUL_HTTP_TOKEN: "env-token",
    CONSUL_CACERT: "/ca.pem",
    CONSUL_CLIENT_CERT: "/c.pem",
    CONSUL_CLIENT_KEY: "/k.pem",
    CONSUL_TLS_SERVER_NAME: "consul.internal",
    CONSUL_NAMESPACE: "team",
    CONSUL_PARTITION: "part",
    CONSUL_HTTP_TOKEN_FILE: "/tok",
  };
  const { config, token } = resolveAgentConfig({}, env);
  assert.equal(config.baseUrl, "https://10.1.1.1:8501");
  assert.equal(config.sslVerify, false);
  assert.equal(token, "env-token");
  assert.deepEqual(
    [config.caFile, config.clientCert, config.clientKey, config.tlsServerName, config.tokenFile],
    ["/ca.pem", "/c.pem", "/k.pem", "consul.internal", "/tok"],
  );
  assert.equal(config.namespace, "team");
  assert.equal(config.partition, "part");
  const over = resolveAgentConfig(
    { address: "http://other:1", token: "opt", sslVerify: true },
    env,
  );
  assert.equal(over.config.baseUrl, "http://other:1");
  assert.equal(over.token, "opt");
  assert.equal(over.config.sslVerify, true);
});

Deno.test("agent config rejects bad values with the name of the setting", () => {
  assert.throws(
    () => resolveAgentConfig({}, { CONSUL_HTTP_ADDR: "ftp://x:1" }),
    (e) => e instanceof AgentConfigError && e.setting === "CONSUL_HTTP_ADDR",
  );
  assert.throws(
    () => resolveAgentConfig({}, { CONSUL_HTTP_SSL: "maybe" }),
    (e) =>
      e instanceof AgentConfigError && /CONSUL_HTTP_SSL: "maybe" is not a boolean/.test(e.message),
  );
  assert.throws(
    () => resolveAgentConfig({ address: "unix://" }),
    /address: unix:\/\/ address has no path/,
  );
  assert.throws(() => resolveAgentConfig({ address: "http://h:1/path" }), /must not have a path/);
});

Deno.test("agent client never shows its token in logs or JSON", () => {
  const client = new AgentClient({ token: "s3cr3t-token" });
  assert.ok(client.hasToken);
  assert.ok(!Deno.inspect(client).includes("s3cr3t"));
  assert.ok(!JSON.stringify(client).includes("s3cr3t"));
  assert.ok(!JSON.stringify(client.config).includes("s3cr3t"));
});

Deno.test("agent config: the token file and token by the Consul CLI's precedence", () => {
  const env = { CONSUL_HTTP_TOKEN: "env", CONSUL_HTTP_TOKEN_FILE: "/env-file" };
  const pick = (o: { token?: string; tokenFile?: string }, e: Record<string, string>) => {
    const { config, token } = resolveAgentConfig(o, e);
    return [config.tokenFile, config.tokenFileSetting, token];
  };
  // tokenFile (-token-file) first; the token beside it is only the fallback for an empty file.
  assert.deepEqual(pick({ tokenFile: "/f", token: "opt" }, env), ["/f", "tokenFile", "opt"]);
  assert.deepEqual(pick({ tokenFile: "/f" }, env), ["/f", "tokenFile", "env"]);
  // Then token (-token): no file is read, not even CONSUL_HTTP_TOKEN_FILE.
  assert.deepEqual(pick({ token: "opt" }, env), [undefined, undefined, "opt"]);
  // Then CONSUL_HTTP_TOKEN_FILE, with CONSUL_HTTP_TOKEN as its fallback; then CONSUL_HTTP_TOKEN.
  assert.deepEqual(pick({}, env), ["/env-file", "CONSUL_HTTP_TOKEN_FILE", "env"]);
  assert.deepEqual(pick({}, { CONSUL_HTTP_TOKEN: "env" }), [undefined, undefined, "env"]);
  // Empty strings count as unset, as with the Consul CLI's flags.
  assert.deepEqual(pick({ tokenFile: "", token: "" }, env), [
    "/env-file",
    "CONSUL_HTTP_TOKEN_FILE",
    "env",
  ]);
  assert.deepEqual(pick({}, {}), [undefined, undefined, undefined]);
});
