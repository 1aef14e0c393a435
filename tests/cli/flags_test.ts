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
