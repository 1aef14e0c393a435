import assert from "node:assert/strict";
import { FlagError, helpText, parseFlags, parseUpstreamFlag } from "../../src/cli/flags.ts";

Deno.test("cli flags: one dash or two, = or a separate value", () => {
  for (
    const args of [["-sidecar-for", "web-1"], ["--sidecar-for=web-1"], ["--sidecar-for", "web-1"]]
  ) {
    assert.equal(parseFlags(args).sidecarFor, "web-1");
  }
  const o = parseFlags([
    "-proxy-id",
    "p1",
    "-sidecar-for",
    "web-1",
    "-http-addr",
    "10.0.0.1:8500",
    "-token",
    "t",
  ]);
  assert.equal(o.proxyId, "p1", "-proxy-id wins over -sidecar-for");
  assert.equal(o.sidecarFor, undefined);
  assert.equal(o.agent.address, "10.0.0.1:8500");
  assert.equal(parseFlags([], { CONNECT_SIDECAR_FOR: "api-1" }).sidecarFor, "api-1");
});

Deno.test("cli flags: limits and timeouts reach the proxy's options", () => {
  const o = parseFlags([
    "-sidecar-for",
    "web-1",
    "-leaf-expiry-margin",
    "600000",
    "-authorize-fresh",
    "2000",
    "-revoke-grace",
    "-1",
  ]);
  assert.equal(o.limits.leafExpiryMarginMs, 600_000);
  assert.equal(o.limits.authorizeFreshMs, 2000);
  assert.equal(o.limits.revokeGraceMs, -1);
  assert.equal(parseFlags(["-sidecar-for", "web-1"]).limits.leafExpiryMarginMs, undefined);
});

Deno.test("cli flags: flag mode with -listen, -service-addr, -upstream and -register", () => {
  const o = parseFlags([
    "-service",
    "web",
    "-listen",
    "0.0.0.0:8443",
    "-service-addr",
    "127.0.0.1:8080",
    "-upstream",
    "db:9191",
    "-upstream",
    "cache.query:127.0.0.2:9292",
    "-upstream",
    "db:9393",
    "-register",
    "-register-id",
    "a",
  ]);
  assert.deepEqual(o.config?.publicListener, { hostname: "0.0.0.0", port: 8443 });
  assert.deepEqual(o.config?.app, { hostname: "127.0.0.1", port: 8080 });
  assert.deepEqual(o.config?.upstreams, [
    { type: "service", name: "db", bind: { hostname: "127.0.0.1", port: 9393 } },
    { type: "prepared_query", name: "cache", bind: { hostname: "127.0.0.2", port: 9292 } },
  ]);
  assert.deepEqual(o.register, { id: "web-proxy-a", name: "web-proxy" });
  assert.deepEqual(parseUpstreamFlag("db.service:0x1f90").bind, {
    hostname: "127.0.0.1",
    port: 8080,
  });
});

Deno.test("cli flags: errors name the flag and the problem", () => {
  const cases: [string[], RegExp][] = [
    [["-service", "x", "-upstream", "db:abc"], /^-upstream: "abc": port must be a number 1-65535$/],
    [["-service", "x", "-upstream", "db.foo:1"], /unknown suffix \.foo/],
    [["-service", "x", "-listen", "1.2.3.4:1"], /^-service-addr: is required with -listen$/],
    [["-bogus"], /^-bogus: unknown flag/],
    [["-sidecar-for"], /^-sidecar-for: needs a value/],
    [[], /-service, -sidecar-for or -proxy-id must be specified/],
    [["-service", "x", "-register"], /^-register: needs -listen/],
    [["-sidecar-for", "a", "-max-inbound", "-1"], /^-max-inbound: "-1" must be a whole number/],
    [["-sidecar-for", "a", "-log-level", "loud"], /^-log-level: unknown log level/],
    [["-sidecar-for", "a", "-leaf-expiry-margin", "1h"], /^-leaf-expiry-margin: "1h" must be/],
    [["stray"], /unexpected argument/],
  ];
  for (const [args, re] of cases) {
    assert.throws(
      () => parseFlags(args),
      (e) => e instanceof FlagError && re.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("cli help lists every flag with its default", () => {
  const help = helpText();
  for (
    const f of [
      "-sidecar-for",
      "-upstream",
      "-handshake-timeout",
      "-max-inbound",
      "-log-json",
      "-token-file",
    ]
  ) {
    assert.ok(help.includes(f), f);
  }
  assert.match(help, /-handshake-timeout <ms>.*\(default 10000\)/);
});

Deno.test("cli: the proxy command exits 2 with a clear message on a bad flag", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../src/cli/main.ts", import.meta.url).pathname,
      "-upstream",
      "x",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /meshgate: -service: -service, -sidecar-for or -proxy-id must be specified/,
  );
});

Deno.test("cli flags: an empty -proxy-id or -sidecar-for is no value (the environment applies), not a mode", () => {
  const flagMode = [
    "-service",
    "web",
    "-listen",
    "127.0.0.1:8443",
    "-service-addr",
    "127.0.0.1:80",
  ];
  for (const empty of [["-proxy-id", ""], ["-sidecar-for", ""], ["--proxy-id="]]) {
    const o = parseFlags([...empty, ...flagMode]);
    assert.equal(o.proxyId, undefined, empty.join(" "));
    assert.equal(o.sidecarFor, undefined, empty.join(" "));
    assert.equal(o.config?.service, "web", empty.join(" "));
  }
  assert.equal(parseFlags(["-proxy-id", ""], { CONNECT_PROXY_ID: "p1" }).proxyId, "p1");
  assert.equal(parseFlags(["-sidecar-for", ""], { CONNECT_SIDECAR_FOR: "a-1" }).sidecarFor, "a-1");
  assert.throws(
    () => parseFlags(["-proxy-id", ""]),
    /-service, -sidecar-for or -proxy-id must be specified/,
  );
});

Deno.test("cli flags: -listen, -upstream ports as Consul parses them (Go's ParseInt base 0)", () => {
  const listen = (l: string) =>
    parseFlags(["-service", "w", "-listen", l, "-service-addr", ":80"]).config?.publicListener;
  assert.deepEqual(listen(":8443"), { hostname: "0.0.0.0", port: 8443 }, "every address");
  assert.deepEqual(listen("[::1]:0x20fb"), { hostname: "::1", port: 8443 });
  assert.deepEqual(listen("localhost:0o20373"), { hostname: "localhost", port: 8443 });
  assert.deepEqual(listen("127.0.0.1:020373"), { hostname: "127.0.0.1", port: 8443 }, "octal");
  assert.deepEqual(listen("127.0.0.1:8_443"), { hostname: "127.0.0.1", port: 8443 });
  assert.deepEqual(
    parseFlags(["-service", "w", "-listen", ":1", "-service-addr", ":8080"]).config?.app,
    { hostname: "127.0.0.1", port: 8080 },
    "-service-addr :8080 dials the local system",
  );
  assert.deepEqual(parseUpstreamFlag("db::9191").bind, { hostname: "127.0.0.1", port: 9191 });
  assert.deepEqual(parseUpstreamFlag("db:0b11").bind, { hostname: "127.0.0.1", port: 3 });
});

Deno.test("cli flags: every bad value is a clear error naming the flag", () => {
  const flagMode = (...extra: string[]) => ["-service", "x", ...extra];
  const cases: [string[], RegExp][] = [
    [
      flagMode("-listen", "127.0.0.1:1e3", "-service-addr", ":1"),
      /^-listen: "127\.0\.0\.1:1e3": port must be a number 1-65535$/,
    ],
    [flagMode("-listen", "127.0.0.1:8080.0", "-service-addr", ":1"), /^-listen: .*port must be/],
    [flagMode("-listen", "127.0.0.1: 80", "-service-addr", ":1"), /^-listen: .*port must be/],
    [flagMode("-listen", "127.0.0.1:09", "-service-addr", ":1"), /^-listen: .*port must be/],
    [flagMode("-listen", "127.0.0.1:", "-service-addr", ":1"), /^-listen: .*port must be/],
    [flagMode("-listen", "127.0.0.1:65536", "-service-addr", ":1"), /^-listen: .*port must be/],
    [flagMode("-listen", "8443", "-service-addr", ":1"), /^-listen: "8443" must be host:port$/],
    [flagMode("-listen", "::1:8443", "-service-addr", ":1"), /^-listen: .*too many colons/],
    [
      flagMode("-listen", "bad host:8443", "-service-addr", ":1"),
      /^-listen: .*"bad host" is not a host name/,
    ],
    [
      flagMode("-listen", ":1", "-service-addr", "127.0.0.1:0x50"),
      /^-service-addr: .*port must be/,
    ],
    [flagMode("-upstream", "db:1e3"), /^-upstream: "1e3": port must be/],
    [
      ["-sidecar-for", "a", "-authorize-timeout", ""],
      /^-authorize-timeout: "" must be a whole number ≥ 1$/,
    ],
    [
      ["-sidecar-for", "a", "-authorize-timeout", "0"],
      /^-authorize-timeout: "0" must be a whole number ≥ 1$/,
    ],
    [["-sidecar-for", "a", "-handshake-timeout", "1e3"], /^-handshake-timeout: "1e3" must be/],
    [["-sidecar-for", "a", "-connect-timeout", "0x10"], /^-connect-timeout: "0x10" must be/],
    [["-sidecar-for", "a", "-drain-timeout", " 5"], /^-drain-timeout: " 5" must be/],
    [
      ["-sidecar-for", "a", "-drain-timeout", "9999999999"],
      /^-drain-timeout: .* must be at most 2147483647$/,
    ],
    [["-sidecar-for", "a", "-max-inbound", ""], /^-max-inbound: "" must be a whole number ≥ 0$/],
    [["-sidecar-for", "a", "-revoke-grace", ""], /^-revoke-grace: "" must be/],
    [
      ["-sidecar-for", "a", "-access-log-sample", ""],
      /^-access-log-sample: "" must be a number from 0 to 1$/,
    ],
    [["-sidecar-for", "a", "-access-log-sample", "1e-1"], /^-access-log-sample: "1e-1" must be/],
    [
      ["-sidecar-for", "a", "-admin-bind", "127.0.0.1:x"],
      /^-admin-bind: .*port must be a number 0-65535$/,
    ],
    [
      ["-sidecar-for", "a", "-log-json=maybe"],
      /^-log-json: takes no value or true\/false, got "maybe"$/,
    ],
  ];
  for (const [args, re] of cases) {
    assert.throws(
      () => parseFlags(args),
      (e) => e instanceof FlagError && re.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("cli flags: booleans take Go's spellings; empty agent settings fall back to the environment", () => {
  assert.equal(parseFlags(["-sidecar-for", "a", "-log-json=1"]).logJson, true);
  assert.equal(parseFlags(["-sidecar-for", "a", "-log-json=F"]).logJson, false);
  const o = parseFlags(["-sidecar-for", "a", "-http-addr", "", "-ca-file", ""]);
  assert.equal(o.agent.address, undefined);
  assert.equal(o.agent.caFile, undefined);
  assert.deepEqual(parseFlags(["-sidecar-for", "a", "-admin-bind", ":0"]).admin, {
    hostname: "0.0.0.0",
    port: 0,
  });
});

Deno.test("cli flags: Consul's -ca-path, -datacenter and -stale reach the agent options", () => {
  const o = parseFlags([
    "-sidecar-for",
    "web-1",
    "-ca-path",
    "/etc/consul.d/ca",
    "-datacenter",
    "dc2",
    "-stale",
  ]);
  assert.equal(o.agent.caPath, "/etc/consul.d/ca");
  assert.equal(o.agent.datacenter, "dc2");
  assert.equal(o.agent.stale, true);
  const none = parseFlags(["-sidecar-for", "web-1"]);
  assert.equal(none.agent.caPath, undefined);
  assert.equal(none.agent.datacenter, undefined);
  assert.equal(none.agent.stale, false);
  // Empty values are unset (the environment applies), as Consul's StringValue flags.
  const empty = parseFlags(["-sidecar-for", "a", "-ca-path", "", "--datacenter="]);
  assert.equal(empty.agent.caPath, undefined);
  assert.equal(empty.agent.datacenter, undefined);
  assert.equal(parseFlags(["-sidecar-for", "a", "-stale=false"]).agent.stale, false);
  assert.equal(parseFlags(["-sidecar-for", "a", "--stale=T"]).agent.stale, true);
});

Deno.test("cli flags: -pprof-addr and -pprof-timeout as Consul reads them", () => {
  const pprof = (...extra: string[]) => parseFlags(["-sidecar-for", "a", ...extra]).pprof;
  assert.equal(pprof(), undefined, "off by default");
  assert.equal(pprof("-pprof-addr", ""), undefined, "empty is off");
  assert.deepEqual(pprof("-pprof-addr", ":6060"), {
    hostname: "0.0.0.0",
    port: 6060,
    timeoutMs: 30_000,
  });
  assert.deepEqual(pprof("-pprof-addr", "127.0.0.1:0", "-pprof-timeout", "1m30s"), {
    hostname: "127.0.0.1",
    port: 0,
    timeoutMs: 90_000,
  });
  // Consul serves with at least one second whatever is asked.
  assert.equal(pprof("-pprof-addr", "[::1]:6060", "-pprof-timeout", "10ms")?.timeoutMs, 1000);
  assert.equal(pprof("-pprof-addr", ":1", "-pprof-timeout", "0")?.timeoutMs, 1000);
  assert.equal(pprof("-pprof-addr", ":1", "-pprof-timeout", "-5s")?.timeoutMs, 1000);
});

Deno.test("cli flags: -log-level takes Consul's spellings (any case, ERR)", () => {
  for (
    const [text, level] of [
      ["ERR", "error"],
      ["err", "error"],
      ["WARN", "warn"],
      ["TRACE", "trace"],
    ] as const
  ) {
    assert.equal(parseFlags(["-sidecar-for", "a", "-log-level", text]).logLevel, level, text);
  }
});

Deno.test("cli flags: bad values of Consul's flags are errors naming the flag", () => {
  const cases: [string[], RegExp][] = [
    [["-pprof-addr", "6060"], /^-pprof-addr: "6060" must be host:port$/],
    [["-pprof-addr", "127.0.0.1:99999"], /^-pprof-addr: .*port must be a number 0-65535$/],
    [["-pprof-addr", ":1", "-pprof-timeout", "30"], /^-pprof-timeout: "30" is not a duration/],
    [["-pprof-timeout", "soon"], /^-pprof-timeout: "soon" is not a duration/],
    [["-pprof-timeout", " 5s"], /^-pprof-timeout: " 5s" is not a duration/],
    [["-pprof-timeout", "1000h"], /^-pprof-timeout: "1000h" must be at most 596h$/],
    [["-stale=maybe"], /^-stale: takes no value or true\/false, got "maybe"$/],
    [["-datacenter"], /^-datacenter: needs a value <dc>$/],
    [["-ca-path"], /^-ca-path: needs a value <dir>$/],
  ];
  for (const [args, re] of cases) {
    assert.throws(
      () => parseFlags(["-sidecar-for", "a", ...args]),
      (e) => e instanceof FlagError && re.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("cli help: Consul's flags in their own sections, ours apart", () => {
  const help = helpText();
  const proxy = help.indexOf("Command options (as consul connect proxy):");
  const http = help.indexOf("HTTP API options");
  const ours = help.indexOf("meshgate options:");
  assert.ok(proxy > 0 && http > proxy && ours > http, help);
  // Where the flag's own line is (the usage at the top names some modes too).
  const at = (flag: string) => proxy + help.slice(proxy).search(new RegExp(`^  -${flag}[ <]`, "m"));
  for (const f of ["sidecar-for", "pprof-addr", "pprof-timeout", "log-level"]) {
    assert.ok(at(f) > proxy && at(f) < http, f);
  }
  for (const f of ["http-addr", "ca-path", "datacenter", "stale", "token-file"]) {
    assert.ok(at(f) > http && at(f) < ours, f);
  }
  for (const f of ["admin-bind", "drain-timeout", "access-log"]) assert.ok(at(f) > ours, f);
  assert.match(help, /-pprof-timeout <duration>.*\(default 30s\)/);
  assert.match(help, /-pprof-addr <host:port>.*--allow-sys=inspector/);
});

Deno.test("cli flags: -h is -help, as in every Go command", () => {
  for (const h of ["-h", "--h", "-help", "--help", "-h=true"]) {
    assert.equal(parseFlags([h]).help, true, h);
  }
  assert.equal(parseFlags(["-h=false", "-sidecar-for", "a"]).help, false);
});

Deno.test("cli flags: a repeated -upstream name keeps the last; values that look like flags are values", () => {
  const o = parseFlags([
    "-service",
    "web",
    "-upstream",
    "db:9191",
    "-upstream",
    "cache:9292",
    "-upstream",
    "db:9393",
    "-access-log",
    "-",
    "-token=",
  ]);
  assert.deepEqual(o.config?.upstreams.map((u) => [u.name, "port" in u.bind && u.bind.port]), [
    ["db", 9393],
    ["cache", 9292],
  ]);
  assert.equal(o.accessLog, "-", "- is stdout, not a flag");
  assert.equal(o.agent.token, "", "an empty inline value is a value");
  assert.throws(
    () => parseFlags(["--", "-sidecar-for", "a"]),
    /^FlagError: --: unexpected argument/,
  );
  assert.throws(() => parseFlags(["-sidecar-for"]), /-sidecar-for: needs a value/);
});

Deno.test("cli flags: the admin token from -admin-token, else MESHGATE_ADMIN_TOKEN", () => {
  const env = { MESHGATE_ADMIN_TOKEN: "from-env" };
  assert.equal(parseFlags(["-sidecar-for", "a"], env).adminToken, "from-env");
  assert.equal(parseFlags(["-sidecar-for", "a", "-admin-token", "flag"], env).adminToken, "flag");
  assert.equal(parseFlags(["-sidecar-for", "a", "-admin-token", ""], {}).adminToken, undefined);
  assert.equal(parseFlags(["-sidecar-for", "a"], {}).adminToken, undefined);
});

Deno.test("cli flags: -workers takes a count from 1 or auto (one per CPU); anything else names the flag", () => {
  const base = ["-sidecar-for", "web-1"];
  assert.equal(parseFlags(base).workers, 1);
  assert.equal(parseFlags([...base, "-workers", "4"]).workers, 4);
  assert.equal(parseFlags([...base, "--workers=2"]).workers, 2);
  assert.equal(parseFlags([...base, "-workers", "auto"]).workers, navigator.hardwareConcurrency);
  for (const bad of ["0", "x", "-1", "1.5", "", " 2", "1025", "AUTO"]) {
    assert.throws(
      () => parseFlags([...base, "-workers", bad]),
      (e: Error) =>
        e instanceof FlagError &&
        e.message ===
          `-workers: "${bad}" must be a whole number from 1 to 1024, or auto (one per CPU)`,
      bad,
    );
  }
  assert.match(helpText(), /-workers <n\|auto>.*one per CPU \(default 1\)/);
});

Deno.test("cli flags: -outbound-tls is node (default) or native; anything else names the flag", () => {
  const base = ["-sidecar-for", "web-1"];
  assert.equal(parseFlags(base).limits.outboundTls, "node");
  assert.equal(parseFlags([...base, "-outbound-tls", "native"]).limits.outboundTls, "native");
  assert.equal(parseFlags([...base, "--outbound-tls=node"]).limits.outboundTls, "node");
  for (const bad of ["", "Native", "deno", "tls"]) {
    assert.throws(
      () => parseFlags([...base, "-outbound-tls", bad]),
      (e: Error) =>
        e instanceof FlagError && e.message === `-outbound-tls: "${bad}" must be node or native`,
      bad,
    );
  }
  assert.match(helpText(), /-outbound-tls <node\|native>.*Nagle.*\(default node\)/);
});

Deno.test("cli: a bad -outbound-tls exits 2 naming the flag", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../src/cli/main.ts", import.meta.url).pathname,
      "-sidecar-for",
      "web-1",
      "-outbound-tls",
      "openssl",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /meshgate: -outbound-tls: "openssl" must be node or native/,
  );
});
