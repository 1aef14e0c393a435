/**
 * The `meshgate proxy` command: flags → options → run. Nothing else lives here.
 *
 *     deno run -A jsr:@meshgate/meshgate/cli -sidecar-for web-1
 *
 * Every expected failure (a bad flag, an agent that cannot be reached, a port in use) ends in
 * one log line and an exit code, never a stack trace.
 * @module
 */
import { type AdminServer, startAdmin } from "../admin/server.ts";
import { AgentConfigError } from "../agent/errors.ts";
import { createLogger, type Logger } from "../net/log.ts";
import { startAccessLog } from "../proxy/access_log.ts";
import { type Proxy, startProxy } from "../proxy/proxy.ts";
import { createDenoAgentClient, namedEnv, PROXY_ENV_VARS } from "../transport/agent_client.ts";
import { AgentRelay } from "../workers/agent_relay.ts";
import { type CliOptions, FlagError, helpText, parseFlags } from "./flags.ts";
import { type PprofServer, startPprof } from "./pprof.ts";

/**
 * Runs the proxy command line until SIGINT/SIGTERM; returns the exit code: 0 after a clean
 * shutdown, 1 when the proxy cannot start, 2 for bad flags or agent settings.
 *
 * @example
 * ```ts
 * import { runCli } from "@meshgate/meshgate/cli";
 * console.log(await runCli(["-help"])); // the flags, then 0
 * console.log(await runCli(["-no-such-flag"])); // "meshgate: …" naming the flag, then 2
 * // A program of its own runs the proxy the same way, until SIGINT/SIGTERM:
 * // Deno.exit(await runCli(["-sidecar-for", "web-1"]));
 * ```
 */
export async function runCli(args: string[]): Promise<number> {
  try {
    return await run(args);
  } catch (err) {
    // Only a bug gets here; still one line, no stack trace.
    console.error(`meshgate: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

async function run(args: string[]): Promise<number> {
  // Accept `proxy` as a subcommand, as in `consul connect proxy`.
  if (args[0] === "proxy") args = args.slice(1);
  let opts: CliOptions;
  try {
    opts = parseFlags(args, namedEnv(PROXY_ENV_VARS));
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    console.error(`meshgate: ${err.message}\n\n${helpText()}`);
    return 2;
  }
  if (opts.help) {
    console.log(helpText());
    return 0;
  }
  const log = createLogger({ level: opts.logLevel, json: opts.logJson });
  let accessFile: Deno.FsFile | undefined;
  if (opts.accessLog && opts.accessLog !== "-") {
    try {
      accessFile = await Deno.open(opts.accessLog, { append: true, create: true });
    } catch (err) {
      log.log("error", "cannot open the access log", {
        path: opts.accessLog,
        error: (err as Error).message,
      });
      return 2;
    }
  }
  let agent;
  // -workers: every thread's agent calls go through one relay here, so that the agent sees one
  // set of watches and identical authorize calls are joined.
  let relay: AgentRelay | undefined;
  try {
    agent = await createDenoAgentClient(opts.agent, {
      wrap: opts.workers > 1
        ? (transport) => (relay = new AgentRelay({ fetch: transport })).fetch
        : undefined,
    });
  } catch (err) {
    log.log("error", "bad agent configuration", { error: agentSettingError(err, opts.agent) });
    accessFile?.close();
    return 2;
  }
  let proxy: Proxy;
  try {
    // Resolves at once: configuration, leaf and roots load in the background (retried, and
    // reported on /ready), so the admin app comes up while the proxy waits.
    proxy = await startProxy({
      agent,
      proxyId: opts.proxyId,
      sidecarFor: opts.sidecarFor,
      config: opts.config,
      register: opts.register,
      limits: opts.limits,
      log,
      workers: relay && {
        count: opts.workers,
        relay,
        agent: opts.agent,
        log: { level: opts.logLevel, json: opts.logJson },
      },
    });
  } catch (err) {
    log.log("error", "cannot start proxy", { error: (err as Error).message });
    accessFile?.close();
    await agent.close();
    relay?.close();
    return 1;
  }
  let stopAccessLog: (() => void) | undefined;
  if (opts.accessLog) {
    const encoder = new TextEncoder();
    const file = accessFile;
    stopAccessLog = startAccessLog(proxy.events, {
      sample: opts.accessLogSample,
      write: file
        ? (line) => void file.writeSync(encoder.encode(line + "\n"))
        : (line) => console.log(line),
    });
  }
  const { promise: stopped, resolve } = Promise.withResolvers<void>();
  const stop = () => resolve();
  let fatal: Error | undefined;
  let stopping = false;
  // The only failure after start that ends the process: the public listener cannot be bound
  // at start (as `consul connect proxy` fails).
  proxy.ready.catch((err: Error) => {
    if (stopping) return;
    fatal = err;
    resolve();
  });
  const admin = opts.admin ? await serveAdmin(proxy, opts, log, stop) : undefined;
  const pprof = opts.pprof ? await servePprof(opts.pprof, log) : undefined;
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await stopped;
  stopping = true;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  if (fatal) log.log("error", "cannot start proxy", { error: fatal.message });
  else log.log("info", "shutting down", { drainMs: opts.drainMs });
  await proxy.close(fatal ? 0 : opts.drainMs);
  stopAccessLog?.();
  accessFile?.close();
  await admin?.close();
  await pprof?.close();
  await agent.close();
  relay?.close();
  return fatal ? 1 : 0;
}

/** An agent setting's error, naming the flag it came from (`address` → `-http-addr`). */
function agentSettingError(err: unknown, agent: CliOptions["agent"]): string {
  if (!(err instanceof AgentConfigError)) return (err as Error).message;
  const flags: Record<string, [string, unknown]> = {
    address: ["-http-addr", true],
    tokenFile: ["-token-file", true],
    CONSUL_CACERT: ["-ca-file", agent.caFile],
    CONSUL_CAPATH: ["-ca-path", agent.caPath],
    CONSUL_CLIENT_CERT: ["-client-cert", agent.clientCert],
    CONSUL_CLIENT_KEY: ["-client-key", agent.clientKey],
  };
  const [flag, given] = flags[err.setting] ?? [err.setting, false];
  const detail = err.message.startsWith(`${err.setting}: `)
    ? err.message.slice(err.setting.length + 2)
    : err.message;
  return `${given ? flag : err.setting}: ${detail}`;
}

/**
 * Serves the admin app; when its address cannot be bound (another sidecar on the same host
 * has 127.0.0.1:19000), says so in one line and runs without it: the data plane does not
 * depend on it.
 */
async function serveAdmin(
  proxy: Proxy,
  opts: CliOptions,
  log: Logger,
  onDrain: () => void,
): Promise<AdminServer | undefined> {
  try {
    const admin = await startAdmin({
      proxy,
      ...opts.admin,
      token: opts.adminToken,
      leafExpiryMarginMs: opts.limits.leafExpiryMarginMs,
      drainMs: opts.drainMs,
      // POST /v1/drain shuts down exactly like SIGTERM.
      onDrain,
    });
    log.log("info", "admin listening", { url: admin.url });
    return admin;
  } catch (err) {
    log.log(
      "warn",
      "running without the admin app (use -admin-bind to move it, empty to disable)",
      {
        error: (err as Error).message,
      },
    );
    return undefined;
  }
}

/**
 * Serves `-pprof-addr`; when it cannot be bound, says so in one line and runs without it, as
 * without the admin app (Consul's proxy would exit: profiling is not worth a sidecar).
 */
async function servePprof(
  options: NonNullable<CliOptions["pprof"]>,
  log: Logger,
): Promise<PprofServer | undefined> {
  try {
    const pprof = await startPprof(options);
    log.log("info", "pprof listening (V8 profiles)", { url: pprof.url });
    return pprof;
  } catch (err) {
    log.log("warn", "running without -pprof-addr", {
      address: `${options.hostname}:${options.port}`,
      error: (err as Error).message,
    });
    return undefined;
  }
}

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
