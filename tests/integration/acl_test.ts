// ACLs on a real Consul (issue #15 point 3): a dev agent with `acl { enabled = true,
// default_policy = "deny" }`, tokens made the way an operator makes them (`consul acl token
// create -service-identity …`, `consul acl policy create`), intentions as config entries. It
// measures what each endpoint meshgate uses needs, endpoint by endpoint, then runs meshgate with
// those tokens: sidecars and a Connect-native service with service-identity tokens, a token for
// another service (refused, said on /ready, nothing forwarded), and the proxy command with
// -token-file, fixed on disk while it runs.
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import type { ProxyState } from "../../src/admin/state.ts";
import { AgentClient } from "../../src/agent/client.ts";
import { AgentError } from "../../src/agent/errors.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import type { ProxyEvent } from "../../src/events/lifecycle.ts";
import { connect } from "../../src/native/service.ts";
import { createLogger } from "../../src/net/log.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { eventually, freePort, spawnLogged } from "../_helpers.ts";
import { echoServer, outcome, roundTrip, tcpClient, tlsClient } from "../e2e/_net.ts";
import {
  type AclConsul,
  type AclToken,
  announceSkip,
  consulBinary,
  createAclToken,
  startConsulWithAcls,
} from "./_consul.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;
const FAST = { minIntervalMs: 0, backoffBaseMs: 100, backoffMaxMs: 1000 };

const binary = consulBinary();
if (!binary) announceSkip("tests/integration/acl_test.ts");

/** Runs `fn` with a deadline, so that a stuck step fails with its name instead of hanging. */
async function within<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: still running after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A round trip through a plain TCP port (an upstream listener); "" when refused. */
async function echoVia(port: number, payload: string): Promise<string> {
  try {
    return new TextDecoder().decode(await roundTrip(await tcpClient(port), payload));
  } catch {
    return "";
  }
}

/**
 * What one request with a token got: `ok`, a count, or `403 <permission> on "<name>"` as Consul
 * names it (`403 Permission denied` when it names none).
 */
async function attempt(fn: () => Promise<unknown>): Promise<string> {
  try {
    const value = await fn();
    return typeof value === "string" ? value : "ok";
  } catch (err) {
    if (!(err instanceof AgentError) || err.status !== 403) throw err;
    const named = /lacks permission '([^']+)' on "([^"]+)"/.exec(err.consulMessage);
    return named ? `403 ${named[1]} on "${named[2]}"` : `403 ${err.consulMessage}`;
  }
}

/** Problems on /ready, as the admin app answers them. */
async function readyProblems(app: { request(path: string): Response | Promise<Response> }) {
  const res = await app.request("/ready");
  const body = await res.json() as { ready: boolean; problems: string[] };
  return { status: res.status, problems: body.problems };
}

Deno.test({
  name: "acl: meshgate on a default-deny Consul with service-identity tokens, least privilege, " +
    "a wrong token refused and said, -token-file fixed while running",
  ignore: !binary,
  // Consul's and the CLI's child processes, and the admin app's metrics, outlive single steps.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const started = Date.now();
    await using consul: AclConsul = await startConsulWithAcls();
    const clients: AgentClient[] = [];
    const client = (token?: AclToken | string) => {
      const c = new AgentClient({
        address: consul.address,
        token: typeof token === "string" ? token : token?.SecretID,
        watchDefaults: FAST,
      });
      clients.push(c);
      return c;
    };
    const mgmt = client(consul.managementToken);

    // Tokens as an operator makes them: service identities for the mesh services, and for the
    // least-privilege probe a policy per variant, each missing one rule of `shop`'s minimum.
    const shopRules = {
      write: `service "shop" { policy = "write" }`,
      sidecarRead: `service "shop-sidecar-proxy" { policy = "read" }`,
      dbRead: `service "db" { policy = "read" }`,
      dbProxyRead: `service "db-sidecar-proxy" { policy = "read" }`,
      nodeRead: `node_prefix "" { policy = "read" }`,
    };
    const rules = (omit: keyof typeof shopRules | "", extra = "") =>
      Object.entries(shopRules).filter(([k]) => k !== omit).map(([, v]) => v).join("\n") +
      extra;
    const [web, db, api, db2, db2WithProxy, shopSi, ...shop] = await Promise.all([
      createAclToken(consul, { description: "web", serviceIdentities: ["web"] }),
      createAclToken(consul, { description: "db", serviceIdentities: ["db"] }),
      createAclToken(consul, { description: "api", serviceIdentities: ["api"] }),
      createAclToken(consul, { description: "db2", serviceIdentities: ["db2"] }),
      createAclToken(consul, {
        description: "db2 and its -register name",
        serviceIdentities: ["db2", "db2-proxy"],
      }),
      createAclToken(consul, { description: "shop", serviceIdentities: ["shop"] }),
      createAclToken(consul, { description: "shop minimum", rules: rules("") }),
      createAclToken(consul, {
        description: "shop read only",
        rules: rules("write", `\nservice "shop" { policy = "read" }`),
      }),
      createAclToken(consul, {
        description: "shop without intentions",
        rules: rules("write", `\nservice "shop" {\n  policy = "write"\n  intentions = "deny"\n}`),
      }),
      createAclToken(consul, { description: "shop no sidecar", rules: rules("sidecarRead") }),
      createAclToken(consul, { description: "shop no db", rules: rules("dbRead") }),
      createAclToken(consul, { description: "shop no node", rules: rules("nodeRead") }),
      createAclToken(consul, { description: "shop no db proxy", rules: rules("dbProxyRead") }),
    ]);
    const [
      shopMin,
      shopReadOnly,
      shopNoIntentions,
      shopNoSidecar,
      shopNoDb,
      shopNoNode,
      shopNoDbProxy,
    ] = shop;

    const dbApp = await echoServer();
    const dbPublic = freePort();
    const webUp = freePort();
    // Registered as an operator does, each service with its own token (service:write on the
    // service and its sidecar is what a service identity grants).
    await client(db).register({
      ID: "db-1",
      Name: "db",
      Port: dbApp.port,
      Connect: { SidecarService: { Port: dbPublic, Check: { TTL: "10m", Status: "passing" } } },
    });
    await client(web).register({
      ID: "web-1",
      Name: "web",
      Port: freePort(),
      Connect: {
        SidecarService: {
          Port: freePort(),
          Check: { TTL: "10m", Status: "passing" },
          Proxy: { Upstreams: [{ DestinationName: "db", LocalBindPort: webUp }] },
        },
      },
    });
    for (
      const [dst, src] of [["db", "web"], ["api", "web"], ["db2", "web"], ["web", "db"]] as const
    ) {
      await new OperatorClient(mgmt).putConfigEntry({
        Kind: "service-intentions",
        Name: dst,
        Sources: [{ Name: src, Action: "allow" }],
      });
    }
    const roots = (await mgmt.roots()).value;
    const uri = (svc: string) => `spiffe://${roots.TrustDomain}/ns/default/dc/dc1/svc/${svc}`;
    const rootPems = roots.Roots.map((r) => r.RootCert);
    const step = (name: string, fn: () => Promise<void>, ms = 30_000) =>
      t.step(name, () => within(ms, name, fn));

    try {
      await step(
        "least privilege, endpoint by endpoint (shop, a web-like sidecar of db)",
        async () => {
          // The leaf first, before anything holds shop's certificate: Consul 1.22.7 checks the
          // token only when it signs one; a certificate it already holds (it fetches one for every
          // registered sidecar) is returned from its cache, which is keyed by service name only.
          const leaf: Record<string, string> = {};
          for (const [name, tok] of [["read only", shopReadOnly], ["minimum", shopMin]] as const) {
            leaf[name] = await attempt(() => client(tok).leaf("shop"));
          }
          assert.deepEqual(leaf, {
            "read only": `403 service:write on "shop"`,
            minimum: "ok",
          });
          await mgmt.register({
            ID: "shop-1",
            Name: "shop",
            Port: freePort(),
            Connect: { SidecarService: { Port: freePort() } },
          });
          const probe = async (tok: AclToken) => {
            const a = client(tok);
            const row = {
              roots: await attempt(() => a.roots()),
              authorize: await attempt(() =>
                a.authorize({ Target: "shop", ClientCertURI: uri("web") })
              ),
              "agent/service": await attempt(() => a.service("shop-1-sidecar-proxy")),
              "discovery-chain": await attempt(() => a.discoveryChain("db")),
              "health/connect": await attempt(async () => {
                const res = await a.healthConnect("db", { passing: false });
                // X-Consul-Results-Filtered-By-ACLs: Consul's only sign that it left some out.
                return `${res.value.length} endpoint(s)` +
                  (res.resultsFilteredByAcls ? ", filtered by ACLs" : "");
              }),
              "intentions/match": await attempt(() => a.intentionMatch("destination", "shop")),
              // What -register does (`<service>-proxy`), and the name a sidecar registration uses.
              "register shop-proxy": await attempt(() =>
                a.register({
                  Kind: "connect-proxy",
                  ID: "shop-proxy-probe",
                  Name: "shop-proxy",
                  Port: 1,
                  Proxy: { DestinationServiceName: "shop" },
                })
              ),
              "register shop-sidecar-proxy": await attempt(() =>
                a.register({
                  Kind: "connect-proxy",
                  ID: "shop-sidecar-proxy-probe",
                  Name: "shop-sidecar-proxy",
                  Port: 1,
                  Proxy: { DestinationServiceName: "shop" },
                })
              ),
            };
            for (const id of ["shop-proxy-probe", "shop-sidecar-proxy-probe"]) {
              await mgmt.deregister(id).catch(() => {});
            }
            return row;
          };
          const ok = {
            roots: "ok",
            authorize: "ok",
            "agent/service": "ok",
            "discovery-chain": "ok",
            "health/connect": "1 endpoint(s)",
            "intentions/match": "ok",
            "register shop-proxy": `403 service:write on "shop-proxy"`,
            "register shop-sidecar-proxy": `403 service:write on "shop-sidecar-proxy"`,
          };
          const table: Record<string, Record<string, string>> = {
            "service identity": await probe(shopSi),
            minimum: await probe(shopMin),
            "read only": await probe(shopReadOnly),
            "intentions = deny": await probe(shopNoIntentions),
            "no sidecar read": await probe(shopNoSidecar),
            "no db read": await probe(shopNoDb),
            "no node read": await probe(shopNoNode),
            "no db-sidecar-proxy read": await probe(shopNoDbProxy),
          };
          console.log("ACL probe (shop):");
          console.table(table);
          assert.deepEqual(table["service identity"], {
            ...ok,
            "register shop-sidecar-proxy": "ok",
          });
          assert.deepEqual(table.minimum, ok);
          assert.deepEqual(table["read only"], {
            ...ok,
            authorize: `403 service:write on "shop"`,
          });
          assert.deepEqual(table["intentions = deny"], {
            ...ok,
            authorize: `403 intention:read on "shop"`,
            "intentions/match": `403 intention:read on "shop"`,
          });
          assert.deepEqual(table["no sidecar read"], {
            ...ok,
            "agent/service": `403 service:read on "shop-sidecar-proxy"`,
          });
          assert.deepEqual(table["no db read"], {
            ...ok,
            "discovery-chain": `403 service:read on "db"`,
            "health/connect": "403 Permission denied",
          });
          assert.deepEqual(table["no node read"], {
            ...ok,
            "health/connect": "0 endpoint(s), filtered by ACLs",
          });
          assert.deepEqual(table["no db-sidecar-proxy read"], {
            ...ok,
            "health/connect": "0 endpoint(s), filtered by ACLs",
          });
        },
      );

      await step(
        "-sidecar-for without a token: the agent hides the sidecar, the error says so",
        async () => {
          // Consul answers /v1/agent/services with what the token may read, and nothing else:
          // for the anonymous token (default deny), nothing.
          const err = await startProxy({ agent: client(), sidecarFor: "db-1" }).catch((e) => e);
          assert.match(
            String(err),
            /No sidecar proxy registered for db-1 \(or none this ACL token can see: it needs service:read/,
          );
        },
      );

      await step(
        "a token without node:read: db's endpoints come back filtered, and meshgate says so",
        async () => {
          // A client-only proxy for shop whose token may read db but not the nodes: Consul
          // answers db's endpoints with [] and X-Consul-Results-Filtered-By-ACLs, not a 403.
          const noNodeLines: string[] = [];
          const events: ConnectionEvent[] = [];
          const shopProxy = await startProxy({
            agent: client(shopNoNode),
            config: {
              service: "shop",
              upstreams: [{
                type: "service",
                name: "db",
                bind: { hostname: "127.0.0.1", port: 0 },
                connectTimeoutMs: 2000,
              }],
            },
            log: createLogger({ level: "info", json: true, write: (l) => noNodeLines.push(l) }),
            onEvent: (e) => void events.push(e),
          });
          try {
            const said = `/v1/health/connect/db: results filtered by ACLs; the token likely ` +
              `lacks node:read and service:read on "db-sidecar-proxy"`;
            const admin = createAdminApp({ proxy: shopProxy });
            const target = async () => {
              const state = await (await admin.request("/v1/state")).json() as ProxyState;
              return state.upstreams[0]?.targets[0];
            };
            await eventually(
              async () => (await target())?.resultsFilteredByAcls === true,
              10_000,
              "db's target to be flagged as filtered by ACLs",
            );
            assert.deepEqual((await target())?.endpoints, []);
            assert.equal((await target())?.aclWarning, said);
            const port = (shopProxy.upstreams[0]!.address as { port: number }).port;
            assert.equal(await echoVia(port, "anyone?"), "");
            await eventually(() => events.some((e) => e.type === "refused"), 5000, "refusal");
            const refused = events.find((e) => e.type === "refused");
            assert.ok(refused?.type === "refused");
            assert.equal(refused.refusal.reason, "no_endpoint");
            assert.equal(refused.refusal.detail, `no healthy instances of db (${said})`);
            const warnings = noNodeLines.filter((l) =>
              l.includes("upstream endpoints filtered by ACLs")
            );
            assert.equal(warnings.length, 1, noNodeLines.join("\n"));
            assert.equal(JSON.parse(warnings[0]!).endpoint, "/v1/health/connect/db");
          } finally {
            await shopProxy.close();
          }
        },
      );

      const lines: string[] = [];
      const log = createLogger({ level: "info", json: true, write: (l) => lines.push(l) });
      const dbEvents: ProxyEvent[] = [];
      const dbProxy = await startProxy({ agent: client(db), sidecarFor: "db-1", log });
      const unsubscribe = dbProxy.events.subscribe((e) => void dbEvents.push(e));
      const webProxy = await startProxy({ agent: client(web), sidecarFor: "web-1", log });
      try {
        await step(
          "sidecars run with service-identity tokens: every watch answers, bytes flow",
          async () => {
            await Promise.all([dbProxy.ready, webProxy.ready]);
            await eventually(
              async () => await echoVia(webUp, "web → db") === "web → db",
              15_000,
              "bytes from web's upstream listener through both sidecars",
            );
            const answered = (a: AgentClient) =>
              a.watches.every((w) => w.status.lastError === undefined && !!w.status.lastSuccessAt);
            await eventually(
              () => answered(webProxy.agent) && answered(dbProxy.agent),
              10_000,
              "every watch to answer",
            );
            // Leaf, roots, config (/v1/agent/service/:id), intentions/match for both; the
            // discovery chain and health/connect of db for web.
            const kinds = (a: AgentClient) => a.watches.map((w) => w.key.split(":")[0]).sort();
            assert.deepEqual(kinds(dbProxy.agent), ["intention-match", "leaf", "roots", "service"]);
            assert.deepEqual(kinds(webProxy.agent), [
              "chain",
              "health",
              "intention-match",
              "leaf",
              "roots",
              "service",
            ]);
            // Authorize answered with db's token: the connection was accepted, not refused.
            assert.ok(dbEvents.some((e) => e.type === "accepted" && e.peer === uri("web")));
            assert.deepEqual(await readyProblems(createAdminApp({ proxy: dbProxy })), {
              status: 200,
              problems: [],
            });
          },
        );

        await step("a Connect-native service with its service-identity token", async () => {
          await using apiSvc = await connect({ service: "api", agent: client(api) });
          const server = await apiSvc.serve(
            (req, { caller }) =>
              new Response(`${new URL(req.url).pathname} for ${caller.id.service}`),
            { hostname: "127.0.0.1", port: 0 },
          );
          try {
            await apiSvc.agent.register({
              ID: "api-native",
              Name: "api",
              Address: "127.0.0.1",
              Port: server.address.port,
              Connect: { Native: true },
            });
            await using webSvc = await connect({ service: "web", agent: client(web) });
            const res = await webSvc.fetch("http://api.service.consul/orders");
            assert.equal(res.status, 200);
            assert.equal(await res.text(), "/orders for web");
            assert.ok(apiSvc.agent.watches.every((w) => w.status.lastError === undefined));
          } finally {
            await server.close();
          }
        });

        await step(
          "another service's token: refused, said with the endpoint and the permission",
          async () => {
            // web-2 runs with db's token. Its leaf comes from the agent's cache (see above), so
            // the proxy starts; authorize then needs service:write on "web", which db's token lacks.
            const web2App = await echoServer();
            const web2Public = freePort();
            await client(web).register({
              ID: "web-2",
              Name: "web",
              Port: web2App.port,
              Connect: { SidecarService: { Port: web2Public } },
            });
            const wrongLines: string[] = [];
            const events: ProxyEvent[] = [];
            const wrong = await startProxy({
              agent: client(db),
              sidecarFor: "web-2",
              log: createLogger({ level: "info", json: true, write: (l) => wrongLines.push(l) }),
            });
            const off = wrong.events.subscribe((e) => void events.push(e));
            try {
              await wrong.ready;
              // db may call web (the intention allows it): only the token is wrong.
              const dbLeaf = (await mgmt.leaf("db")).value;
              const caller = await tlsClient(web2Public, {
                cert: dbLeaf.CertPEM,
                key: dbLeaf.PrivateKeyPEM,
                ca: rootPems,
              });
              assert.equal(await outcome(caller, "let me in"), "closed");
              assert.equal(web2App.connections(), 0, "nothing reaches the application");
              const refused = events.find((e) => e.type === "refused");
              assert.ok(refused?.type === "refused");
              assert.equal(refused.refusal.reason, "authorize_error");
              const said = `POST /v1/agent/connect/authorize: 403 Permission denied: token with ` +
                `AccessorID '${db.AccessorID}' lacks permission 'service:write' on "web"`;
              assert.equal(refused.refusal.detail, said);
              assert.ok(
                wrongLines.some((l) => l.includes(JSON.stringify(said).slice(1, -1))),
                "the refusal, with the endpoint and the permission, is logged",
              );
              const ready = await readyProblems(createAdminApp({ proxy: wrong }));
              assert.equal(ready.status, 503);
              assert.ok(
                ready.problems.some((p) =>
                  p.includes("/v1/agent/connect/authorize") &&
                  p.includes(`lacks permission 'service:write' on "web"`)
                ),
                ready.problems.join("\n"),
              );
            } finally {
              off();
              await wrong.close();
              await web2App.close();
            }
          },
        );

        await step(
          "the proxy command with -token-file: a token fixed on disk, no restart",
          async () => {
            const dir = await Deno.makeTempDir({ prefix: "meshgate-acl-" });
            const tokenFile = `${dir}/token`;
            // Rewritten in place, as a secrets agent does; web's token lacks service:write on db2.
            await Deno.writeTextFile(tokenFile, web.SecretID);
            const db2App = await echoServer();
            const db2Public = freePort();
            const adminPort = freePort();
            const cli = spawnLogged(Deno.execPath(), [
              "run",
              "-A",
              MAIN,
              "-service",
              "db2",
              "-listen",
              `127.0.0.1:${db2Public}`,
              "-service-addr",
              `127.0.0.1:${db2App.port}`,
              "-register",
              "-register-id",
              "cli",
              "-token-file",
              tokenFile,
              "-http-addr",
              consul.address,
              "-admin-bind",
              `127.0.0.1:${adminPort}`,
              "-log-json",
            ]);
            const admin = {
              request: (path: string) => fetch(`http://127.0.0.1:${adminPort}${path}`),
            };
            const problems = async () => {
              try {
                return await readyProblems(admin);
              } catch {
                return { status: 0, problems: [] as string[] };
              }
            };
            const saying = async (...parts: string[]) => {
              let last: string[] = [];
              await eventually(
                async () => {
                  last = (await problems()).problems;
                  return last.some((p) => parts.every((part) => p.includes(part)));
                },
                20_000,
                `/ready to say ${parts.join(" … ")} (last: ${last.join("; ")})`,
              ).catch((err) => {
                throw new Error(
                  `${err.message}\nlast: ${last.join("\n")}\n${cli.logs().slice(-3000)}`,
                );
              });
            };
            try {
              // 1. The wrong service's token: no leaf, /ready and the log say why, nothing listens.
              await saying(
                "/v1/agent/connect/ca/leaf/db2",
                `token with AccessorID '${web.AccessorID}' lacks permission 'service:write' on "db2"`,
              );
              assert.ok(cli.logs().includes("/v1/agent/connect/ca/leaf/db2"));
              assert.ok(cli.logs().includes(`lacks permission 'service:write' on \\"db2\\"`));
              assert.equal(await echoVia(db2Public, "anyone?"), "", "no public listener yet");
              assert.equal(db2App.connections(), 0);

              // 2. db2's service identity: the leaf loads and mTLS is served; -register's name
              //    `db2-proxy` is outside that identity, and /ready says so.
              await Deno.writeTextFile(tokenFile, db2.SecretID);
              await saying(
                "register db2-proxy-cli",
                `lacks permission 'service:write' on "db2-proxy"`,
              );
              const webLeaf = (await mgmt.leaf("web")).value;
              const viaTls = await tlsClient(db2Public, {
                cert: webLeaf.CertPEM,
                key: webLeaf.PrivateKeyPEM,
                ca: rootPems,
              });
              assert.equal(new TextDecoder().decode(await roundTrip(viaTls, "mTLS")), "mTLS");

              // 3. A token that also covers db2-proxy: registered at the next heartbeat, ready.
              await Deno.writeTextFile(tokenFile, db2WithProxy.SecretID);
              await eventually(
                async () => (await problems()).status === 200,
                20_000,
                "/ready to turn 200",
              );
              assert.ok("db2-proxy-cli" in await mgmt.services());
              cli.child.kill("SIGTERM");
              assert.equal(await cli.exited(), 0);
              assert.ok(!("db2-proxy-cli" in await mgmt.services()), "deregistered on the way out");
              for (const secret of [web, db2, db2WithProxy].map((x) => x.SecretID)) {
                assert.ok(!cli.logs().includes(secret), "no token in the logs");
              }
            } finally {
              try {
                cli.child.kill("SIGKILL");
              } catch {
                // already gone
              }
              await cli.exited();
              await db2App.close();
              await Deno.remove(dir, { recursive: true });
            }
          },
          50_000,
        );

        await step("a deny intention refuses web, new and open connections alike", async () => {
          const open = await tcpClient(webUp);
          let got = "";
          open.on("data", (d) => (got += d));
          let openClosed = false;
          // Half-open: the proxy's close shows up as 'end' first.
          open.on("end", () => (openClosed = true));
          open.on("close", () => (openClosed = true));
          open.write("before;");
          await eventually(() => got === "before;", 5000, "the open connection to echo");
          const reached = dbApp.connections();
          await new OperatorClient(mgmt).putConfigEntry({
            Kind: "service-intentions",
            Name: "db",
            Sources: [{ Name: "web", Action: "deny" }],
          });
          await eventually(() => openClosed, 15_000, "the open connection to be revoked");
          assert.equal(await echoVia(webUp, "after"), "");
          assert.equal(dbApp.connections(), reached, "no new connection reached db");
          const revoked = dbEvents.find((e) => e.type === "revoked");
          assert.ok(revoked?.type === "revoked");
          assert.equal(revoked.peer, uri("web"));
          assert.match(revoked.reason, /default\/web => default\/db .*Action: DENY/);
          const refused = dbEvents.filter((e) => e.type === "refused");
          assert.ok(refused.length > 0, "the new connection was refused by db's sidecar");
          assert.ok(refused.every((e) => e.type === "refused" && e.refusal.reason === "denied"));
          open.destroy();
          const logged = lines.join("\n");
          assert.ok(![web, db].some((x) => logged.includes(x.SecretID)), "no token in the logs");
        });
        console.log(`acl_test: ${Date.now() - started} ms`);
      } finally {
        unsubscribe();
        await Promise.all([webProxy.close(), dbProxy.close()]);
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await dbApp.close();
    }
  },
});
