/**
 * `deno task demo`: the mesh at work on the embedded Consul test double. Two small services —
 * `web` calls `api` through its upstream — each behind a meshgate sidecar. Traffic flows over
 * mTLS, an intention flips to deny and the connection is refused, then it is allowed again.
 * Everything keeps running until Ctrl-C, with the addresses to try by hand.
 */
import { AgentClient, createLogger, type Proxy, startProxy } from "@meshgate/meshgate";
import { type AdminServer, startAdmin } from "@meshgate/meshgate/admin";
import { OperatorClient } from "@meshgate/meshgate/agent";
import { startDevAgent } from "@meshgate/meshgate/devagent";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const say = (text: string) => console.log(`\n▶ ${text}`);
const dev = await startDevAgent({ tcpCheckIntervalMs: 500 });
const agent = new AgentClient({ address: dev.address, watchDefaults: { minIntervalMs: 0 } });
say(`Consul test double on ${dev.url} (trust domain ${dev.ca.trustDomain})`);

// The api service: a plain HTTP app that knows nothing about the mesh.
const apiPort = freePort();
const api = Deno.serve(
  { hostname: "127.0.0.1", port: apiPort, onListen: () => {} },
  () => Response.json({ service: "api", time: new Date().toISOString() }),
);
const [apiPublic, webPublic, upstreamPort] = [freePort(), freePort(), freePort()];
await agent.register({
  ID: "api-1",
  Name: "api",
  Port: apiPort,
  Connect: { SidecarService: { Port: apiPublic } },
});
await agent.register({
  ID: "web-1",
  Name: "web",
  Port: freePort(),
  Connect: {
    SidecarService: {
      Port: webPublic,
      Proxy: { Upstreams: [{ DestinationName: "api", LocalBindPort: upstreamPort }] },
    },
  },
});
say(
  "Registered api-1 and web-1, each with a sidecar; web's upstream 'api' listens on " +
    `127.0.0.1:${upstreamPort}`,
);

const log = createLogger({ level: "info" });
const apiProxy = await startProxy({ agent, sidecarFor: "api-1", log: log.with({ proxy: "api" }) });
const webProxy = await startProxy({ agent, sidecarFor: "web-1", log: log.with({ proxy: "web" }) });
await Promise.all([apiProxy.ready, webProxy.ready]);
while ((await agent.healthConnect("api", { passing: true })).value.length === 0) {
  await new Promise((r) => setTimeout(r, 200));
}
say("Both sidecars are up (mTLS on their public ports, leaf certificates from the CA).");

/** Each sidecar's dashboard, on 19000/19001 when free (else any free port). */
async function dashboard(proxy: Proxy, port: number): Promise<AdminServer> {
  try {
    return await startAdmin({ proxy, port });
  } catch {
    return await startAdmin({ proxy, port: 0 });
  }
}
const webAdmin = await dashboard(webProxy, 19000);
const apiAdmin = await dashboard(apiProxy, 19001);
say(`Dashboards — open them now to watch what follows:
    web's sidecar: ${webAdmin.url}
    api's sidecar: ${apiAdmin.url}   (refused connections show up here)`);
await new Promise((r) => setTimeout(r, Number(Deno.env.get("DEMO_PAUSE_MS") ?? 3000)));

async function callApi(): Promise<string> {
  try {
    // A new connection each time: intentions are checked when a connection is made.
    const res = await fetch(`http://127.0.0.1:${upstreamPort}/`, {
      headers: { Connection: "close" },
      signal: AbortSignal.timeout(3000),
    });
    return `${res.status} ${await res.text()}`;
  } catch (err) {
    return `refused (${(err as Error).message.split("\n")[0]})`;
  }
}

say(`web → its upstream → mTLS → api's sidecar → api:  ${await callApi()}`);
// Intention writes are an operator's job, on the same agent connection.
const operator = new OperatorClient(agent);
say("Adding an intention: web → api DENY");
await operator.upsertIntention("web", "api", { Action: "deny" });
say(`web → api now:  ${await callApi()}`);
say("Setting the intention to ALLOW");
await operator.upsertIntention("web", "api", { Action: "allow" });
say(`web → api now:  ${await callApi()}`);

console.log(`
Everything keeps running. Try by hand:
  curl http://127.0.0.1:${upstreamPort}/                       # web's upstream to api, over mTLS
  curl -X PUT -d '{"Action":"deny"}' '${dev.url}/v1/connect/intentions/exact?source=web&destination=api'
  curl ${dev.url}/v1/health/connect/api
  CONSUL_HTTP_ADDR=${dev.address} deno task proxy -help
  curl ${webAdmin.url}v1/state   ·   curl ${apiAdmin.url}metrics
web calls api every 5 s so the dashboards stay lively; flip the intention with the curl above and
watch api's dashboard refuse it. Ctrl-C to stop.`);

// Light background traffic for the dashboards' sparklines and connection lists.
const traffic = setInterval(() => void callApi(), 5000);

const stop = async () => {
  clearInterval(traffic);
  await webAdmin.close();
  await apiAdmin.close();
  await webProxy.close(1000);
  await apiProxy.close(1000);
  await api.shutdown();
  await agent.close();
  await dev.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
