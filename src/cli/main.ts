/**
 * The `meshgate proxy` command: flags → options → run. Nothing else lives here.
 *
 *     deno run -A jsr:@meshgate/meshgate/cli -sidecar-for web-1
 * @module
 */
import { startAdmin } from "../admin/server.ts";
import { createLogger } from "../net/log.ts";
import { startAccessLog } from "../proxy/access_log.ts";
import { startProxy } from "../proxy/proxy.ts";
import { createDenoAgentClient, namedEnv, PROXY_ENV_VARS } from "../transport/agent_client.ts";
import { FlagError, helpText, parseFlags } from "./flags.ts";

/**
 * Runs the proxy command line until SIGINT/SIGTERM; returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { runCli } from "@meshgate/meshgate/cli";
 * Deno.exit(await runCli(["-sidecar-for", "web-1"]));
 * ```
 */
export async function runCli(args: string[]): Promise<number> {
  // Accept `proxy` as a subcommand, as in `consul connect proxy`.
  if (args[0] === "proxy") args = args.slice(1);
  let opts;
  try {
    opts = parseFlags(args, namedEnv(PROXY_ENV_VARS));
  } catch (err) {
    if (err instanceof FlagError) {
      console.error(`meshgate: ${err.message}\n\n${helpText()}`);
      return 2;
    }
    throw err;
  }
  if (opts.help) {
    console.log(helpText());
    return 0;
  }
  const log = createLogger({ level: opts.logLevel, json: opts.logJson });
  let agent;
  try {
    agent = await createDenoAgentClient(opts.agent);
  } catch (err) {
    log.log("error", "bad agent configuration", { error: (err as Error).message });
    return 2;
  }
  let proxy;
  try {
    proxy = await startProxy({
      agent,
      proxyId: opts.proxyId,
      sidecarFor: opts.sidecarFor,
      config: opts.config,
      register: opts.register,
      limits: opts.limits,
      log,
    });
  } catch (err) {
    log.log("error", "cannot start proxy", { error: (err as Error).message });
    await agent.close();
    return 1;
  }
  let stopAccessLog: (() => void) | undefined;
  let accessFile: Deno.FsFile | undefined;
  if (opts.accessLog) {
    try {
      const encoder = new TextEncoder();
      accessFile = opts.accessLog === "-"
        ? undefined
        : await Deno.open(opts.accessLog, { append: true, create: true });
      const file = accessFile;
      stopAccessLog = startAccessLog(proxy.events, {
        sample: opts.accessLogSample,
        write: file
          ? (line) => void file.writeSync(encoder.encode(line + "\n"))
          : (line) => console.log(line),
      });
    } catch (err) {
      log.log("error", "cannot open the access log", {
        path: opts.accessLog,
        error: (err as Error).message,
      });
      await proxy.close();
      await agent.close();
      return 1;
    }
  }
  const { promise: stopped, resolve } = Promise.withResolvers<void>();
  const stop = () => resolve();
  let admin;
  if (opts.admin) {
    try {
      admin = await startAdmin({
        proxy,
        ...opts.admin,
        token: opts.adminToken,
        leafExpiryMarginMs: opts.limits.leafExpiryMarginMs,
        drainMs: opts.drainMs,
        // POST /v1/drain shuts down exactly like SIGTERM.
        onDrain: stop,
      });
      log.log("info", "admin listening", { url: admin.url });
    } catch (err) {
      log.log(
        "error",
        "cannot start the admin app (use -admin-bind to move it, empty to disable)",
        {
          error: (err as Error).message,
        },
      );
      await proxy.close();
      await agent.close();
      return 1;
    }
  }
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await stopped;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  log.log("info", "shutting down", { drainMs: opts.drainMs });
  await proxy.close(opts.drainMs);
  stopAccessLog?.();
  accessFile?.close();
  await admin?.close();
  await agent.close();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
