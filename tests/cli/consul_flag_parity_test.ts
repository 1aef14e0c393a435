// Every flag of the real `consul connect proxy` (from its own -h) exists in meshgate, takes a
// value exactly when Consul's does, and is listed in `-help` — or `-help` says why it cannot
// apply. The binary comes from MESHGATE_CONSUL_BIN or `deno task consul:build`'s cache; without
// it the test says so loudly and skips.
import assert from "node:assert/strict";
import { FlagError, FLAGS, helpText, parseFlags } from "../../src/cli/flags.ts";
import { announceSkip, consulBinary } from "../integration/_consul.ts";

/** One flag as Consul's help prints it: `  -name=<value>` or `  -name` (a boolean). */
interface ConsulFlag {
  name: string;
  takesValue: boolean;
}

/** The flags in the text of `consul <command> -h` (Go's flag usage, as Consul formats it). */
function parseConsulHelp(text: string): ConsulFlag[] {
  return [...text.matchAll(/^ {2}-([A-Za-z0-9][A-Za-z0-9_-]*)(=<[^>]*>)?\s*$/gm)].map((m) => ({
    name: m[1]!, // the name group is required by the pattern
    takesValue: m[2] !== undefined,
  }));
}

const binary = consulBinary();
if (!binary) announceSkip("consul_flag_parity_test.ts");

Deno.test("consul flag parity: the help parser reads Consul's flag lines", () => {
  const sample = `Usage: consul connect proxy [options]

    $ consul connect proxy -service frontend -upstream db:8181

HTTP API Options

  -ca-file=<value>
     Path to a CA file to use for TLS when communicating with Consul.

  -stale
     Permit any Consul server (non-leader) to respond to this request.

Command Options

  -http-addr=<address>
     The \`address\` and port of the Consul HTTP agent.
`;
  assert.deepEqual(parseConsulHelp(sample), [
    { name: "ca-file", takesValue: true },
    { name: "stale", takesValue: false },
    { name: "http-addr", takesValue: true },
  ]);
});

Deno.test({
  name: "consul flag parity: every flag of `consul connect proxy` 1.22 is meshgate's or explained",
  ignore: !binary,
  async fn() {
    const out = await new Deno.Command(binary!, {
      args: ["connect", "proxy", "-h"],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const consul = parseConsulHelp(text);
    // A parser that finds nothing would pass everything: Consul 1.22 has 22 flags.
    assert.ok(consul.length >= 20, `only ${consul.length} flags parsed from:\n${text}`);
    assert.ok(consul.some((f) => f.name === "sidecar-for" && f.takesValue));
    assert.ok(consul.some((f) => f.name === "stale" && !f.takesValue));

    const help = helpText();
    const problems: string[] = [];
    for (const flag of consul) {
      const spec = FLAGS.find((f) => f.name === flag.name);
      const line = help.split("\n").find((l) => new RegExp(`^\\s+-${flag.name}(\\s|$)`).test(l));
      if (!spec) {
        // A flag meshgate lacks must be listed with its reason: "-x  not applicable: why".
        if (!line || !/not applicable: \S/.test(line)) {
          problems.push(`-${flag.name}: meshgate has no such flag and -help does not explain it`);
        }
        continue;
      }
      if (!line) problems.push(`-${flag.name}: missing from -help`);
      if (!!spec.value !== flag.takesValue) {
        problems.push(
          `-${flag.name}: Consul's ${flag.takesValue ? "takes a value" : "is a boolean"}, ` +
            `meshgate's ${spec.value ? "takes a value" : "is a boolean"}`,
        );
      }
      // The parser knows it (a value of the wrong shape may be refused, but not as unknown).
      const args = ["-sidecar-for", "web-1", `-${flag.name}`, ...(flag.takesValue ? ["x"] : [])];
      try {
        parseFlags(args);
      } catch (err) {
        if (!(err instanceof FlagError)) throw err;
        if (/unknown flag/.test(err.message)) problems.push(`-${flag.name}: ${err.message}`);
      }
    }
    assert.deepEqual(problems, [], problems.join("\n"));
  },
});
