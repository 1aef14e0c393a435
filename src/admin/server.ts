/**
 * Serves the admin app with `Deno.serve` (127.0.0.1 by default, like Envoy's admin port).
 * @module
 */
import { type AdminAppOptions, createAdminApp, isLoopback } from "./app.ts";
import { createProxyMetrics } from "./proxy_metrics.ts";

/** Options of {@linkcode startAdmin}. */
export interface AdminServerOptions extends Omit<AdminAppOptions, "boundToLoopback"> {
  /** Address to bind. @default {"127.0.0.1"} */
  hostname?: string;
  /** Port; 0 picks a free one. @default {19000} */
  port?: number;
}

/** The admin app could not listen on its address (in use, not available, not allowed). */
export class AdminBindError extends Error {
  /**
   * Creates the error.
   * @param message the address and why
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AdminBindError";
  }
}

/** A running admin server. */
export interface AdminServer extends AsyncDisposable {
  /** The bound address. */
  readonly address: { hostname: string; port: number };
  /** `http://host:port/`, for logs and the demo. */
  readonly url: string;
  /** Stops serving (open event streams are closed). */
  close(): Promise<void>;
}

/**
 * Starts the admin server of a proxy.
 *
 * @example
 * ```ts
 * import { AgentClient, connect } from "@meshgate/meshgate";
 * import { startAdmin } from "@meshgate/meshgate/admin";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * await using api = await connect({ service: "api", agent }); // or a Proxy from startProxy()
 * await using admin = await startAdmin({ proxy: api, port: 0 }); // 0: any free port
 * console.log(`dashboard: ${admin.url}`);
 * console.log(await (await fetch(new URL("ready", admin.url))).json()); // { ready: true, problems: [] }
 * ```
 */
export async function startAdmin(options: AdminServerOptions): Promise<AdminServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const metrics = options.metrics ??
    createProxyMetrics(options.proxy, { leafExpiryMarginMs: options.leafExpiryMarginMs });
  const ac = new AbortController();
  const app = createAdminApp({
    ...options,
    metrics,
    boundToLoopback: isLoopback(hostname),
    signal: ac.signal,
  });
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port: options.port ?? 19000,
      signal: ac.signal,
      onListen: (addr) => resolve(addr),
      onError: (err) => new Response(`admin error: ${(err as Error).message}`, { status: 500 }),
    }, app.fetch);
  } catch (err) {
    // (Rejecting `listening` here left a rejection nobody awaited: an uncaught AddrInUse.)
    ac.abort();
    if (!options.metrics) metrics.close();
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    const why = err instanceof Deno.errors.AddrInUse
      ? "address already in use"
      : (err as Error).message.replace(/ \(os error \d+\)$/, "");
    throw new AdminBindError(
      `cannot serve the admin app on ${host}:${options.port ?? 19000}: ${why}`,
      {
        cause: err,
      },
    );
  }
  const addr = await listening;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      ac.abort();
      await server.finished;
      if (!options.metrics) metrics.close();
    })();
    return closing;
  };
  return {
    address: { hostname: addr.hostname, port: addr.port },
    url: `http://${host}:${addr.port}/`,
    close,
    [Symbol.asyncDispose]: close,
  };
}
