// runCli in-process, for every exit that comes before the proxy runs: help, bad flags, bad agent
// settings (named by the flag they came from), an access log that cannot be opened. Running,
// signals and draining are in proxy_process_test.ts (a real process).
import assert from "node:assert/strict";
import { runCli } from "../../src/cli/main.ts";

/** Runs the command with console output captured. */
async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    const code = await runCli(args);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("cli: -help and -h print the help on stdout and exit 0, also after `proxy`", async () => {
  for (const args of [["-help"], ["-h"], ["--help"], ["proxy", "-help"]]) {
    const r = await run(...args);
    assert.equal(r.code, 0, args.join(" "));
    assert.match(r.out, /-sidecar-for/);
    assert.equal(r.err, "");
  }
});

Deno.test("cli: a bad flag exits 2 with one line naming it, then the help", async () => {
  const r = await run("-sidecar-for", "web-1", "-handshake-timeout", "soon");
  assert.equal(r.code, 2);
  assert.match(r.err, /^meshgate: -handshake-timeout: "soon" must be a whole number ≥ 1\n\n/);
  assert.match(r.err, /-sidecar-for/, "the help follows");
  assert.ok(!/\n\s+at /.test(r.err), "no stack trace");
  const mode = await run("-upstream", "db:9191");
  assert.equal(mode.code, 2);
  assert.match(mode.err, /-service, -sidecar-for or -proxy-id must be specified/);
});

Deno.test("cli: bad agent settings exit 2, naming the flag they came from", async () => {
  const cases: [string[], RegExp][] = [
    [["-http-addr", "ftp://127.0.0.1:8500"], /-http-addr: unsupported scheme ftp:/],
    [["-ca-file", "/nonexistent/meshgate-ca.pem"], /-ca-file: cannot read \/nonexistent/],
    [["-ca-path", "/nonexistent/meshgate-ca.d"], /-ca-path: cannot read \/nonexistent/],
    [["-token-file", "/nonexistent/meshgate-token"], /-token-file: cannot read \/nonexistent/],
    [
      ["-client-cert", "/nonexistent/c.pem", "-client-key", "/nonexistent/k.pem"],
      /-client-cert: cannot read/,
    ],
  ];
  for (const [flags, re] of cases) {
    const r = await run("-sidecar-for", "web-1", "-admin-bind", "", ...flags, "-log-json");
    assert.equal(r.code, 2, flags.join(" "));
    const line = JSON.parse(r.err.trim().split("\n").at(-1)!);
    assert.equal(line["@message"], "bad agent configuration");
    assert.match(line.error, re);
  }
});

Deno.test("cli: an access log that cannot be opened exits 2 naming the path", async () => {
  const r = await run(
    "-sidecar-for",
    "web-1",
    "-admin-bind",
    "",
    "-access-log",
    "/nonexistent/dir/access.log",
    "-log-json",
  );
  assert.equal(r.code, 2);
  const line = JSON.parse(r.err.trim());
  assert.equal(line["@message"], "cannot open the access log");
  assert.equal(line.path, "/nonexistent/dir/access.log");
});
