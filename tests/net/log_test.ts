// The logger: levels, text and JSON lines, fields that could carry secrets dropped, and the
// level names the Consul CLI accepts.
import assert from "node:assert/strict";
import { createLogger, type LogLevel, parseLogLevel, silentLogger } from "../../src/net/log.ts";

function capture(options: Parameters<typeof createLogger>[0] = {}) {
  const lines: string[] = [];
  const log = createLogger({ ...options, write: (l) => lines.push(l) });
  return { log, lines };
}

Deno.test("log: lines below the level are not written; info is the default", () => {
  const levels: LogLevel[] = ["trace", "debug", "info", "warn", "error"];
  for (const [i, level] of levels.entries()) {
    const { log, lines } = capture({ level });
    for (const l of levels) log.log(l, l);
    assert.deepEqual(lines.map((x) => x.match(/\] (\w+)$/)?.[1]), levels.slice(i), level);
  }
  const { log, lines } = capture();
  assert.equal(log.level, "info");
  log.log("debug", "hidden");
  log.log("info", "shown");
  assert.equal(lines.length, 1);
});

Deno.test("log: a text line is time, padded level, message and key=value fields, quoted when needed", () => {
  const { log, lines } = capture();
  log.log("warn", "leaf renewal failed", {
    serial: "0a:1b",
    attempt: 3,
    ok: false,
    big: 12n,
    error: 'HTTP 500: "no leader"',
    empty: "",
    gone: undefined,
    nothing: null,
  });
  const [line] = lines;
  assert.match(
    line!,
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[WARN \] leaf renewal failed serial=0a:1b attempt=3 ok=false big=12 error="HTTP 500: \\"no leader\\"" empty= nothing=null$/,
  );
  const { log: l2, lines: bare } = capture();
  l2.log("error", "x");
  assert.match(bare[0]!, /\[ERROR\] x$/, "no trailing space without fields");
  l2.log("info", "a", { v: "has=sign" });
  assert.match(bare[1]!, / v="has=sign"$/);
});

Deno.test("log: a JSON line is one object with @timestamp, @level, @message and the fields", () => {
  const { log, lines } = capture({ json: true, level: "debug" });
  log.log("debug", "accepted", { peer: "spiffe://td/ns/default/dc/dc1/svc/web", ms: 4, n: 9n });
  const obj = JSON.parse(lines[0]!);
  assert.deepEqual(Object.keys(obj), ["@timestamp", "@level", "@message", "peer", "ms", "n"]);
  assert.equal(obj["@level"], "debug");
  assert.equal(obj["@message"], "accepted");
  assert.equal(obj.n, "9", "bigint as a string");
  assert.ok(!Number.isNaN(Date.parse(obj["@timestamp"])));
});

Deno.test("log: fields whose name says secret never reach a line, in either form", () => {
  for (const json of [false, true]) {
    const { log, lines } = capture({ json });
    const secret = "s3cr3t-value";
    log.with({ token: secret, service: "web" }).log("info", "m", {
      PrivateKeyPEM: secret,
      apiKey: secret,
      "X-Consul-Token": secret,
      client_secret: secret,
      password: secret,
      keyId: secret, // a name with "key" in it is dropped too: better safe
      serial: "01",
    });
    assert.equal(lines.length, 1);
    assert.ok(!lines[0]!.includes(secret), lines[0]);
    assert.match(lines[0]!, /serial/);
    assert.match(lines[0]!, /service/);
  }
});

Deno.test("log: with() adds fields to every line, a line's own fields win, the base is untouched", () => {
  const { log, lines } = capture();
  const web = log.with({ listener: "inbound:web", dir: "in" });
  const deeper = web.with({ peer: "x" });
  web.log("info", "a", { dir: "out" });
  deeper.log("info", "b");
  log.log("info", "c");
  assert.match(lines[0]!, / a listener=inbound:web dir=out$/);
  assert.match(lines[1]!, / b listener=inbound:web dir=in peer=x$/);
  assert.match(lines[2]!, / c$/);
  assert.equal(web.level, "info");
});

Deno.test("parseLogLevel takes Consul's spellings in any case, and nothing else", () => {
  const ok: [string, LogLevel][] = [
    ["TRACE", "trace"],
    ["Debug", "debug"],
    ["info", "info"],
    ["WARN", "warn"],
    ["warning", "warn"],
    ["ERROR", "error"],
  ];
  for (const [text, level] of ok) assert.equal(parseLogLevel(text), level, text);
  for (const bad of ["", "verbose", "err", " info", "constructor", "toString", "__proto__"]) {
    assert.throws(
      () => parseLogLevel(bad),
      (e) => e instanceof RangeError && e.message.startsWith(`unknown log level "${bad}"`),
      JSON.stringify(bad),
    );
  }
});

Deno.test("silentLogger writes nothing and stays silent through with()", () => {
  const original = console.error;
  const seen: unknown[] = [];
  console.error = (...a: unknown[]) => seen.push(a);
  try {
    silentLogger.log("error", "x", { a: 1 });
    silentLogger.with({ b: 2 }).log("error", "y");
  } finally {
    console.error = original;
  }
  assert.deepEqual(seen, []);
  assert.equal(silentLogger.with({}), silentLogger);
});

Deno.test("log: without write, lines go to console.error", () => {
  const original = console.error;
  const seen: string[] = [];
  console.error = (line: string) => seen.push(line);
  try {
    createLogger().log("info", "to stderr");
  } finally {
    console.error = original;
  }
  assert.equal(seen.length, 1);
  assert.match(seen[0]!, /\[INFO \] to stderr$/);
});
