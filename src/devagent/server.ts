/**
 * Serves the test double over real HTTP on loopback, with real TCP checks.
 * @module
 */
import { createDevAgent, type DevAgent, type DevAgentOptions } from "./app.ts";

/** Options of {@linkcode startDevAgent}. */
export interface StartDevAgentOptions extends DevAgentOptions {
  /** Address to bind. @default {"127.0.0.1"} */
  hostname?: string;
  /** Port to bind; 0 picks a free one. @default {0} */
  port?: number;
}

/** A running test double. */
export interface RunningDevAgent extends DevAgent, AsyncDisposable {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** `127.0.0.1:<port>`, the form `CONSUL_HTTP_ADDR` takes. */
  address: string;
  /** The bound port. */
  port: number;
}

/** Connects to `host:port` and reports whether anything answered (Consul's TCP check). */
export async function probeTcp(hostPort: string): Promise<boolean> {
  const i = hostPort.lastIndexOf(":");
  try {
    const conn = await Deno.connect({
      hostname: hostPort.slice(0, i).replace(/^\[|\]$/g, ""),
      port: Number(hostPort.slice(i + 1)),
    });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts the Consul test double on loopback.
 *
 * @example
 * ```ts
 * import { AgentClient } from "@meshgate/meshgate/agent";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 * await using dev = await startDevAgent();
 * await using agent = new AgentClient({ address: dev.address });
 * console.log((await agent.roots()).value.TrustDomain);
 * ```
 */
export async function startDevAgent(options: StartDevAgentOptions = {}): Promise<RunningDevAgent> {
  const agent = await createDevAgent({ probeTcp, ...options });
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
    onListen: (addr) => resolve(addr as Deno.NetAddr),
  }, agent.app.fetch);
  const addr = await listening;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const close = async () => {
    await agent.close();
    await server.shutdown();
  };
  return {
    ...agent,
    url: `http://${host}:${addr.port}`,
    address: `${host}:${addr.port}`,
    port: addr.port,
    close,
    [Symbol.asyncDispose]: close,
  };
}
