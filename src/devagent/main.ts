/**
 * `deno task dev-agent`: runs the Consul test double alone, like `consul agent -dev`.
 *
 *     deno task dev-agent [--port 8500] [--host 127.0.0.1] [--leaf-ttl 72h] [--default-deny]
 * @module
 */
import { parseGoDuration } from "../agent/duration.ts";
import { startDevAgent } from "./server.ts";

const HELP = `Usage: deno task dev-agent [flags]

Runs meshgate's in-process Consul test double (the HTTP API a Connect proxy uses).

  -port <n>        port to listen on (default 8500; 0 picks a free one)
  -host <addr>     address to bind (default 127.0.0.1)
  -leaf-ttl <d>    leaf certificate lifetime, Go duration (default 72h)
  -default-deny    deny connections no intention matches (default: allow, as -dev)
  -help            this text
`;

if (import.meta.main) {
  const args = [...Deno.args];
  const opts: { port: number; hostname: string; leafTtlMs?: number; defaultAllow: boolean } = {
    port: 8500,
    hostname: "127.0.0.1",
    defaultAllow: true,
  };
  while (args.length) {
    const raw = args.shift()!;
    const [flag, inline] = raw.replace(/^--?/, "").split("=", 2);
    const value = () => {
      const v = inline ?? args.shift();
      if (v === undefined) {
        console.error(`-${flag}: missing value`);
        Deno.exit(2);
      }
      return v;
    };
    switch (flag) {
      case "port": {
        const port = Number(value());
        if (!Number.isInteger(port) || port < 0 || port > 65535) {
          console.error(`-port: must be a number 0-65535`);
          Deno.exit(2);
        }
        opts.port = port;
        break;
      }
      case "host":
        opts.hostname = value();
        break;
      case "leaf-ttl":
        try {
          opts.leafTtlMs = parseGoDuration(value());
        } catch (err) {
          console.error(`-leaf-ttl: ${(err as Error).message}`);
          Deno.exit(2);
        }
        break;
      case "default-deny":
        opts.defaultAllow = false;
        break;
      case "help":
      case "h":
        console.log(HELP);
        Deno.exit(0);
        break;
      default:
        console.error(`unknown flag ${raw}\n\n${HELP}`);
        Deno.exit(2);
    }
  }
  const agent = await startDevAgent({ ...opts, tcpCheckIntervalMs: 2000 });
  console.log(`meshgate dev agent listening on ${agent.url}`);
  console.log(`trust domain ${agent.ca.trustDomain}; export CONSUL_HTTP_ADDR=${agent.address}`);
  const stop = async () => {
    await agent.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}
