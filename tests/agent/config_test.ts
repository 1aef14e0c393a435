import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { resolveAgentConfig } from "../../src/agent/config.ts";
import { AgentConfigError } from "../../src/agent/errors.ts";

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

Deno.test("agent config: CONSUL_HTTP_SSL turns host:port and http:// into https; explicit options win", () => {
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
  // CONSUL_HTTP_SSL=true makes even an http:// address https, as in the Consul CLI.
  assert.equal(over.config.baseUrl, "https://other:1");
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

Deno.test("agent config: CONSUL_HTTP_SSL and the scheme, as the Consul CLI combines them", () => {
  // Measured with consul 1.22.7: `CONSUL_HTTP_SSL=true consul kv get -http-addr http://…` sends
  // a TLS ClientHello. No setting turns an https:// address back into http.
  const cases: [string, Record<string, string>, { ssl?: boolean }, string][] = [
    ["http://h:1", { CONSUL_HTTP_SSL: "true" }, {}, "https://h:1"],
    ["http://h:1", { CONSUL_HTTP_SSL: "false" }, {}, "http://h:1"],
    ["https://h:1", { CONSUL_HTTP_SSL: "false" }, {}, "https://h:1"],
    ["https://h:1", {}, { ssl: false }, "https://h:1"],
    ["h:1", {}, { ssl: true }, "https://h:1"],
    ["h:1", { CONSUL_HTTP_SSL: "true" }, { ssl: false }, "http://h:1"],
  ];
  for (const [address, env, options, url] of cases) {
    const { config } = resolveAgentConfig({ address, ...options }, env);
    assert.equal(config.baseUrl, url, `${address} ${JSON.stringify({ ...env, ...options })}`);
    assert.equal(config.transport, url.slice(0, url.indexOf(":")));
  }
});

Deno.test("agent config: booleans in Go's ParseBool spellings only; empty is unset", () => {
  for (const t of ["1", "t", "T", "true", "TRUE", "True"]) {
    assert.equal(resolveAgentConfig({}, { CONSUL_HTTP_SSL_VERIFY: t }).config.sslVerify, true, t);
  }
  for (const f of ["0", "f", "F", "false", "FALSE", "False"]) {
    assert.equal(resolveAgentConfig({}, { CONSUL_HTTP_SSL_VERIFY: f }).config.sslVerify, false, f);
  }
  assert.equal(resolveAgentConfig({}, { CONSUL_HTTP_SSL_VERIFY: "" }).config.sslVerify, true);
  for (const bad of ["yes", "on", "tRUE", " true", "2"]) {
    assert.throws(
      () => resolveAgentConfig({}, { CONSUL_HTTP_SSL_VERIFY: bad }),
      (e) => e instanceof AgentConfigError && e.setting === "CONSUL_HTTP_SSL_VERIFY",
      JSON.stringify(bad),
    );
  }
});

Deno.test("agent config: the CA directory, the datacenter, blank values", () => {
  const { config } = resolveAgentConfig({}, { CONSUL_CAPATH: "/etc/ca.d", CONSUL_CACERT: "" });
  assert.equal(config.caPath, "/etc/ca.d");
  assert.equal(config.caFile, undefined, "an empty variable is unset");
  assert.equal(
    resolveAgentConfig({ caPath: "/opt/ca" }, { CONSUL_CAPATH: "/x" }).config.caPath,
    "/opt/ca",
  );
  assert.equal(resolveAgentConfig({ datacenter: "dc2" }).config.datacenter, "dc2");
  assert.equal(resolveAgentConfig({ datacenter: "" }).config.datacenter, undefined);
  assert.equal(
    resolveAgentConfig({}, { CONSUL_HTTP_ADDR: "   " }).config.baseUrl,
    "http://127.0.0.1:8500",
  );
  assert.equal(
    resolveAgentConfig({ address: " 10.0.0.1:8500 " }).config.baseUrl,
    "http://10.0.0.1:8500",
  );
});

Deno.test("agent config: addresses that cannot be an agent are refused, naming their setting", () => {
  const bad: [Parameters<typeof resolveAgentConfig>, string, RegExp][] = [
    [
      [{}, { CONSUL_HTTP_ADDR: "http://h:1?x=1" }],
      "CONSUL_HTTP_ADDR",
      /must not have a path or query/,
    ],
    [[{ address: "http://h:1/v1" }], "address", /must not have a path/],
    [[{ address: "http://exa mple:1" }], "address", /is not a valid address/],
    [[{ address: "ws://h:1" }], "address", /unsupported scheme ws:/],
    [[{}, { CONSUL_HTTP_ADDR: "unix://" }], "CONSUL_HTTP_ADDR", /unix:\/\/ address has no path/],
  ];
  for (const [args, setting, re] of bad) {
    assert.throws(
      () => resolveAgentConfig(...args),
      (e) => e instanceof AgentConfigError && e.setting === setting && re.test(e.message),
      JSON.stringify(args),
    );
  }
});
