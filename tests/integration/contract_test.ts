// One contract suite, run against the project's Consul test double and against a real
// `consul agent -dev` (built by `deno task consul:build`). Every difference the real agent shows
// is fixed in the double; where Consul's behaviour is version-specific, the test says so.
import assert from "node:assert/strict";
import {
  AgentClient,
  AgentError,
  type AuthorizeResult,
  OperatorClient,
  parseCertificate,
  parseSpiffeId,
  verifyChain,
} from "../../mod.ts";
import { devAgent, eventually, next } from "../_helpers.ts";
import { announceSkip, consulBinary, startConsul } from "./_consul.ts";

interface Target extends AsyncDisposable {
  url: string;
  address: string;
}

function contract(name: string, start: () => Promise<Target>, ignore = false) {
  Deno.test({
    name: `contract (${name})`,
    ignore,
    sanitizeResources: false, // the real agent is a child process with pipes
    async fn(t) {
      await using agent = await start();
      const client = new AgentClient({
        address: agent.address,
        watchDefaults: { minIntervalMs: 0, backoffBaseMs: 50, backoffMaxMs: 500 },
      });
      const operator = new OperatorClient(client);
      const raw = (path: string, init?: RequestInit) => fetch(`${agent.url}${path}`, init);
      const td = (await client.roots()).value.TrustDomain;
      const uri = (svc: string) => `spiffe://${td}/ns/default/dc/dc1/svc/${svc}`;

      await t.step("register with Connect.SidecarService and read the sidecar back", async () => {
        await client.register({
          ID: "web-1",
          Name: "web",
          Port: 8080,
          Tags: ["v2"],
          Check: { Name: "web alive", TTL: "30s", Status: "passing" },
          Connect: {
            SidecarService: {
              Proxy: {
                Config: { local_connect_timeout_ms: 2000 },
                Upstreams: [{ DestinationName: "db", LocalBindPort: 9191 }],
              },
            },
          },
        });
        const res = await client.service("web-1-sidecar-proxy");
        const s = res.value;
        assert.equal(res.hash, s.ContentHash);
        assert.match(s.ContentHash!, /^[0-9a-f]{1,16}$/);
        assert.equal(s.Kind, "connect-proxy");
        assert.equal(s.Service, "web-sidecar-proxy");
        assert.ok(s.Port >= 21000 && s.Port <= 21255);
        assert.deepEqual(s.Tags, ["v2"]);
        assert.deepEqual(s.Meta, {});
        assert.deepEqual(s.Weights, { Passing: 1, Warning: 1 });
        assert.equal(s.Datacenter, "dc1");
        assert.equal(s.Proxy?.DestinationServiceName, "web");
        assert.equal(s.Proxy?.DestinationServiceID, "web-1");
        assert.equal(s.Proxy?.LocalServiceAddress, "127.0.0.1");
        assert.equal(s.Proxy?.LocalServicePort, 8080);
        assert.deepEqual(s.Proxy?.Config, { local_connect_timeout_ms: 2000 });
        assert.deepEqual(s.Proxy?.Upstreams, [{
          DestinationType: "service",
          DestinationName: "db",
          LocalBindPort: 9191,
          MeshGateway: {},
        }]);
        assert.deepEqual(s.Proxy?.MeshGateway, {});
        assert.deepEqual(s.Proxy?.Expose, {});
        assert.equal(s.Connect, undefined);
        const proxies = await client.services({ filter: "Kind == `connect-proxy`" });
        assert.deepEqual(Object.keys(proxies), ["web-1-sidecar-proxy"]);
      });

      await t.step("roots and leaf: fields, SPIFFE URIs, chain to the active root", async () => {
        const roots = (await client.roots()).value;
        assert.match(roots.TrustDomain, /^[0-9a-f-]{36}\.consul$/);
        const active = roots.Roots.find((r) => r.Active)!;
        assert.equal(active.ID, roots.ActiveRootID);
        assert.equal(active.ID.length, 59);
        assert.equal(active.Name, "Consul CA Primary Cert");
        assert.equal(active.ExternalTrustDomain, roots.TrustDomain.replace(".consul", ""));
        assert.equal(active.PrivateKeyType, "ec");
        assert.equal(active.PrivateKeyBits, 256);
        const rootInfo = await parseCertificate(active.RootCert);
        assert.equal(rootInfo.sha1Fingerprint, active.ID);
        assert.equal(rootInfo.subjectKeyId, active.SigningKeyID);
        assert.deepEqual(rootInfo.uris, [`spiffe://${roots.TrustDomain}`]);
        assert.match(rootInfo.subject, /^CN=pri-[a-z0-9]+\.consul\.ca\.[0-9a-f]{8}\.consul$/);
        const leaf = await client.leaf("web");
        assert.ok(leaf.index! >= 1n);
        assert.equal(leaf.value.Service, "web");
        assert.equal(leaf.value.ServiceURI, uri("web"));
        assert.equal(leaf.value.CreateIndex, leaf.value.ModifyIndex);
        assert.match(leaf.value.SerialNumber, /^[0-9a-f]{2}(:[0-9a-f]{2})*$/);
        assert.match(leaf.value.PrivateKeyPEM, /^-----BEGIN EC PRIVATE KEY-----/);
        const info = await parseCertificate(leaf.value.CertPEM);
        assert.equal(info.subject, "");
        assert.deepEqual(info.uris, [uri("web")]);
        assert.equal(info.serial, leaf.value.SerialNumber);
        assert.equal(info.authorityKeyId, active.SigningKeyID);
        assert.equal(
          Date.parse(leaf.value.ValidBefore) - Date.parse(leaf.value.ValidAfter),
          72 * 3600_000,
        );
        await verifyChain(info, [], [rootInfo]);
        const id = parseSpiffeId(leaf.value.ServiceURI);
        assert.equal(id.kind === "service" && id.datacenter, "dc1");
        // A leaf for a service that is registered nowhere is still issued.
        assert.equal((await client.leaf("nowhere")).value.Service, "nowhere");
      });

      await t.step("authorize: default allow, exact deny, wildcard precedence", async () => {
        const authz = (src: string, dst: string) =>
          client.authorize({ Target: dst, ClientCertURI: uri(src), ClientCertSerial: "01" });
        // The real agent answers authorize from its intention cache, refreshed by a blocking
        // query in the background: a change shows up within moments, not synchronously.
        const expectAuthz = async (src: string, dst: string, want: boolean, reason?: string) => {
          let last: AuthorizeResult | undefined;
          await eventually(
            async () => {
              last = await authz(src, dst);
              return last.Authorized === want && (!reason || last.Reason === reason);
            },
            15_000,
            `${src} -> ${dst} authorized=${want}`,
          ).catch(() => {
            assert.deepEqual(last, { Authorized: want, Reason: reason });
          });
        };
        // On the real agent (1.22.7) authorize answers from an intention-match cache that, seen
        // here, can stay stale for 40 s and more: after a destination's entry is modified, and
        // for a target first asked about before its entry existed. So each destination is
        // written once, as one `service-intentions` entry, before anything asks about it; the
        // proxy must never assume authorize reflects an intention change at once.
        await expectAuthz("web", "fresh", true, "Default behavior configured by ACLs");
        await operator.putConfigEntry({
          Kind: "service-intentions",
          Name: "db",
          Sources: [{ Name: "web", Action: "allow" }, { Name: "*", Action: "deny" }],
        });
        await expectAuthz(
          "api",
          "db",
          false,
          "Matched L4 intention: default/* => default/db (Precedence: 8, Action: DENY)",
        );
        await expectAuthz(
          "web",
          "db",
          true,
          "Matched L4 intention: default/web => default/db (Precedence: 9, Action: ALLOW)",
        );
        await operator.putConfigEntry({
          Kind: "service-intentions",
          Name: "*",
          Sources: [{ Name: "api", Action: "allow" }, { Name: "*", Action: "deny" }],
        });
        await expectAuthz(
          "cache",
          "web",
          false,
          "Matched L4 intention: default/* => default/* (Precedence: 5, Action: DENY)",
        );
        await expectAuthz(
          "api",
          "cache",
          true,
          "Matched L4 intention: default/api => default/* (Precedence: 6, Action: ALLOW)",
        );
        await expectAuthz("api", "db", false); // 8 beats 6
        const bad = await client.authorize({ Target: "db", ClientCertURI: "https://x" })
          .catch((e) => e);
        assert.ok(bad instanceof AgentError);
        assert.deepEqual([bad.status, bad.consulMessage], [
          400,
          "ClientCertURI not a valid Connect identifier",
        ]);
        const agentUri = `spiffe://${td}/agent/client/dc/dc1/id/node`;
        const notSvc = await client.authorize({ Target: "db", ClientCertURI: agentUri })
          .catch((e) => e);
        assert.equal(notSvc.consulMessage, "ClientCertURI not a valid Service identifier");
        const noTarget = await client.authorize({ Target: "", ClientCertURI: uri("web") })
          .catch((e) => e);
        assert.equal(noTarget.consulMessage, "Target service must be specified");
        const put = await raw("/v1/agent/connect/authorize", { method: "PUT", body: "{}" });
        assert.equal(put.status, 405);
        await put.body?.cancel();
      });

      await t.step("intentions: exact CRUD, list order, 404, idempotent delete", async () => {
        const ixn = await operator.intention("web", "db");
        assert.equal(ixn?.Action, "allow");
        assert.equal(ixn?.Precedence, 9);
        assert.equal(ixn?.SourceNS, "default");
        assert.equal(ixn?.SourceType, "consul");
        assert.equal(ixn?.ID ?? "", "");
        // 1.22.7 leaves out CreatedAt/UpdatedAt for intentions created by name.
        assert.equal(ixn?.CreatedAt, undefined);
        assert.equal(await operator.intention("nobody", "db"), undefined);
        const list = (await client.intentions()).value;
        assert.deepEqual(list.map((i) => `${i.SourceName}->${i.DestinationName}:${i.Precedence}`), [
          "web->db:9",
          "*->db:8",
          "api->*:6",
          "*->*:5",
        ]);
        const filtered = (await client.intentions({ filter: 'DestinationName == "db"' })).value;
        assert.equal(filtered.length, 2);
        await operator.deleteIntention("*", "*");
        await operator.deleteIntention("api", "*");
        await operator.deleteIntention("api", "*");
        await operator.deleteIntention("*", "db");
        await operator.deleteIntention("web", "db");
        assert.deepEqual((await client.intentions()).value, []);
        const missingSource = await raw("/v1/connect/intentions/exact?destination=db", {
          method: "PUT",
          body: '{"Action":"allow"}',
        });
        assert.equal(missingSource.status, 500);
        assert.equal(await missingSource.text(), "required query parameter 'source' not set");
      });

      await t.step("intentions/match: evaluation order, blocking on change", async () => {
        await operator.putConfigEntry({
          Kind: "service-intentions",
          Name: "pay",
          Sources: [
            { Name: "web", Action: "allow" },
            { Name: "billing", Action: "deny" },
            { Name: "*", Action: "deny" },
          ],
        });
        const first = await client.intentionMatch("destination", "pay");
        assert.deepEqual(
          first.value.map((i) => [i.SourceName, i.Action, i.Precedence]),
          [["billing", "deny", 9], ["web", "allow", 9], ["*", "deny", 8]],
        );
        assert.ok(first.index! > 0n);
        const waiting = client.intentionMatch("destination", "pay", {
          index: first.index,
          waitMs: 20_000,
        });
        await operator.putConfigEntry({
          Kind: "service-intentions",
          Name: "pay",
          Sources: [{ Name: "web", Action: "deny" }, { Name: "*", Action: "deny" }],
        });
        const changed = await waiting;
        assert.ok(changed.index! > first.index!);
        assert.deepEqual(changed.value.map((i) => [i.SourceName, i.Action]), [
          ["web", "deny"],
          ["*", "deny"],
        ]);
        const missingBy = await raw("/v1/connect/intentions/match?name=pay");
        assert.equal(missingBy.status, 500);
        assert.match(await missingBy.text(), /'by' not set/);
        await operator.deleteConfigEntry("service-intentions", "pay");
      });

      await t.step("discovery chain: default, resolver, failover, redirect, splitter", async () => {
        const def = (await client.discoveryChain("db")).value;
        assert.equal(def.Default, true);
        assert.equal(def.Protocol, "tcp");
        assert.equal(def.StartNode, "resolver:db.default.default.dc1");
        assert.equal(def.Targets["db.default.default.dc1"].SNI, `db.default.dc1.internal.${td}`);
        assert.equal(def.Nodes[def.StartNode].Resolver?.ConnectTimeout, "5s");
        assert.equal(def.Nodes[def.StartNode].Resolver?.Default, true);
        await operator.putConfigEntry({
          Kind: "service-resolver",
          Name: "db",
          ConnectTimeout: "3s",
          Failover: { "*": { Service: "db-backup" } },
        });
        const withResolver = (await client.discoveryChain("db")).value;
        assert.equal(withResolver.Default, undefined);
        const node = withResolver.Nodes["resolver:db.default.default.dc1"];
        assert.equal(node.Resolver?.ConnectTimeout, "3s");
        assert.equal(node.Resolver?.Default ?? false, false);
        assert.deepEqual(node.Resolver?.Failover?.Targets, ["db-backup.default.default.dc1"]);
        assert.equal(withResolver.Targets["db.default.default.dc1"].ConnectTimeout, "3s");
        await operator.putConfigEntry({
          Kind: "service-resolver",
          Name: "old-db",
          Redirect: { Service: "db" },
        });
        const redirected = (await client.discoveryChain("old-db")).value;
        assert.equal(redirected.StartNode, "resolver:db.default.default.dc1");
        // A resolver's load-balancer policy travels in the compiled chain's resolver node.
        await operator.putConfigEntry({
          Kind: "service-resolver",
          Name: "lb",
          LoadBalancer: { Policy: "least_request" },
        });
        const lb = (await client.discoveryChain("lb")).value;
        assert.equal(
          (lb.Nodes["resolver:lb.default.default.dc1"].LoadBalancer as { Policy?: string })
            ?.Policy,
          "least_request",
        );
        assert.equal(def.Nodes[def.StartNode].LoadBalancer, undefined);
        // Every service a splitter names must speak the same L7 protocol.
        await operator.putConfigEntry({ Kind: "service-defaults", Name: "api", Protocol: "http" });
        const inconsistent = await operator.putConfigEntry({
          Kind: "service-splitter",
          Name: "api",
          Splits: [{ Weight: 90 }, { Weight: 10, Service: "api-canary" }],
        }).catch((e) => e);
        assert.ok(inconsistent instanceof AgentError);
        assert.match(inconsistent.consulMessage, /uses inconsistent protocols/);
        await operator.putConfigEntry({
          Kind: "service-defaults",
          Name: "api-canary",
          Protocol: "http",
        });
        await operator.putConfigEntry({
          Kind: "service-splitter",
          Name: "api",
          Splits: [{ Weight: 90 }, { Weight: 10, Service: "api-canary" }],
        });
        const split = (await client.discoveryChain("api")).value;
        assert.equal(split.Protocol, "http");
        assert.equal(split.StartNode, "splitter:api.default.default");
        assert.deepEqual(
          split.Nodes[split.StartNode].Splits?.map((s) => [s.Weight, s.NextNode]),
          [[90, "resolver:api.default.default.dc1"], [
            10,
            "resolver:api-canary.default.default.dc1",
          ]],
        );
        for (
          const [kind, name] of [
            ["service-splitter", "api"],
            ["service-defaults", "api"],
            ["service-defaults", "api-canary"],
            ["service-resolver", "old-db"],
            ["service-resolver", "db"],
          ]
        ) await operator.deleteConfigEntry(kind, name);
        assert.equal((await client.discoveryChain("db")).value.Default, true);
      });

      await t.step("health/connect: mesh endpoints follow check status with ?passing", async () => {
        await client.register({
          ID: "db-1",
          Name: "db",
          Port: 5432,
          Connect: {
            SidecarService: { Port: 21900, Check: { TTL: "60s", Status: "critical" } },
          },
        });
        const entries = async (passing: boolean) =>
          (await client.healthConnect("db", { passing })).value;
        await eventually(async () => (await entries(false)).length === 1, 10_000, "catalog sync");
        const [e] = await entries(false);
        assert.equal(e.Service.ID, "db-1-sidecar-proxy");
        assert.equal(e.Service.Port, 21900);
        assert.equal(e.Service.Proxy.DestinationServiceName, "db");
        assert.equal(e.Node.Datacenter, "dc1");
        assert.equal(e.Node.Address, "127.0.0.1");
        assert.ok(e.Checks.some((c) => c.CheckID === "serfHealth"));
        assert.equal(e.Service.TaggedAddresses?.["consul-virtual"]?.Port, 21900);
        assert.deepEqual(await entries(true), []);
        const before = await client.healthConnect("db", { passing: true });
        const blocked = client.healthConnect("db", {
          passing: true,
          index: before.index,
          waitMs: 20_000,
        });
        await client.setCheck("service:db-1-sidecar-proxy", "pass");
        let woke = await blocked;
        // The real agent's catalog sync may answer an intermediate state first.
        for (let i = 0; woke.value.length === 0 && i < 5; i++) {
          woke = await client.healthConnect("db", {
            passing: true,
            index: woke.index,
            waitMs: 20_000,
          });
        }
        assert.equal(woke.value.length, 1);
        assert.ok(woke.index! > before.index!);
        assert.deepEqual((await client.healthConnect("web", {})).value.map((x) => x.Service.ID), [
          "web-1-sidecar-proxy",
        ]);
      });

      await t.step("prepared queries: create, execute with connect=true, delete", async () => {
        // db-1's sidecar is passing after the step above.
        const id = await operator.createPreparedQuery({
          Name: "db-query",
          Service: { Service: "db", OnlyPassing: true },
        });
        assert.match(id, /^[0-9a-f-]{36}$/);
        for (const key of ["db-query", id]) {
          const r = await client.preparedQuery(key);
          assert.equal(r.Service, "db");
          assert.equal(r.Datacenter, "dc1");
          assert.equal(r.Failovers, 0);
          assert.deepEqual(r.Nodes.map((e) => e.Service.ID), ["db-1-sidecar-proxy"]);
          assert.equal(r.Nodes[0].Service.Port, 21900);
        }
        await client.setCheck("service:db-1-sidecar-proxy", "warn");
        assert.deepEqual((await client.preparedQuery("db-query")).Nodes, []);
        await client.setCheck("service:db-1-sidecar-proxy", "pass");
        await operator.deletePreparedQuery(id);
        const gone = await client.preparedQuery("db-query").catch((e) => e);
        assert.ok(gone instanceof AgentError);
        assert.equal(gone.status, 404);
        assert.match(gone.message, /Query not found/);
      });

      await t.step("blocking: a wait times out with the same index", async () => {
        const r0 = await client.roots();
        const started = Date.now();
        const r1 = await client.roots({ index: r0.index, waitMs: 1000 });
        assert.ok(Date.now() - started >= 900);
        assert.equal(r1.index, r0.index);
        const i0 = await client.intentions();
        const blocked = client.intentions({ index: i0.index, waitMs: 20_000 });
        await operator.upsertIntention("web", "cache", { Action: "allow" });
        const i1 = await blocked;
        assert.ok(i1.index! > i0.index!);
        assert.equal(i1.value.length, 1);
        await operator.deleteIntention("web", "cache");
      });

      await t.step(
        "hash blocking on the proxy registration, and 404 on deregistration",
        async () => {
          const r0 = await client.service("web-1-sidecar-proxy");
          const other = await client.service("web-1-sidecar-proxy", { hash: "0", waitMs: 20_000 });
          assert.equal(other.hash, r0.hash, "any other hash answers at once");
          const started = Date.now();
          const same = await client.service("web-1-sidecar-proxy", { hash: r0.hash, waitMs: 1000 });
          assert.ok(Date.now() - started >= 900, "the current hash blocks");
          assert.equal(same.hash, r0.hash);
          const blocked = client.service("web-1-sidecar-proxy", { hash: r0.hash, waitMs: 20_000 });
          await client.register({
            ID: "web-1",
            Name: "web",
            Port: 8080,
            Tags: ["v3"],
            Connect: { SidecarService: {} },
          });
          let changed = await blocked;
          assert.notEqual(changed.hash, r0.hash);
          // A wake-up is not proof of the change we made (the agent re-syncs in steps).
          for (let i = 0; i < 5 && changed.value.Tags[0] !== "v3"; i++) {
            changed = await client.service("web-1-sidecar-proxy", {
              hash: changed.hash,
              waitMs: 5000,
            });
          }
          assert.deepEqual(changed.value.Tags, ["v3"]);
          const gone = client.service("web-1-sidecar-proxy", { hash: changed.hash, waitMs: 20_000 })
            .catch((e) => e);
          await client.deregister("web-1");
          const err = await gone;
          assert.ok(err instanceof AgentError);
          assert.deepEqual([err.status, err.consulMessage], [
            404,
            "unknown service ID: web-1-sidecar-proxy",
          ]);
        },
      );

      await t.step("errors for unknown services and bad input", async () => {
        const unknown = await client.deregister("nope").catch((e) => e);
        assert.equal(unknown.status, 404);
        assert.match(unknown.consulMessage, /^Unknown service ID "nope"/);
        const badCheck = await client.setCheck("nope", "pass").catch((e) => e);
        assert.equal(badCheck.status, 404);
        assert.match(badCheck.consulMessage, /^Unknown check ID "nope"/);
        const badWait = await raw("/v1/agent/connect/ca/roots?index=1&wait=forever");
        assert.equal(badWait.status, 400);
        assert.equal(await badWait.text(), "Invalid wait time");
        const emptyBody = await raw("/v1/agent/connect/authorize", { method: "POST" });
        assert.deepEqual([emptyBody.status, await emptyBody.text()], [
          400,
          "Request decode failed: EOF",
        ]);
        const unknownField = await raw("/v1/agent/service/register", {
          method: "PUT",
          body: '{"Name":"x","Bogus":1}',
        });
        assert.deepEqual([unknownField.status, await unknownField.text()], [
          400,
          'Request decode failed: json: unknown field "Bogus"',
        ]);
        // CE refuses `ns` (even `default`) where an endpoint reads enterprise metadata…
        const ns = await raw("/v1/health/connect/db?ns=default");
        assert.equal(ns.status, 400);
        assert.equal(
          await ns.text(),
          `Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature`,
        );
        const part = await raw("/v1/agent/services?partition=default");
        assert.equal(part.status, 400);
        assert.match(await part.text(), /Partitions are a Consul Enterprise feature/);
        // …and ignores it where none is read (1.22.7; the spec expected a 400 everywhere).
        const rootsNs = await raw("/v1/agent/connect/ca/roots?ns=team");
        assert.equal(rootsNs.status, 200);
        await rootsNs.body?.cancel();
        const noName = await raw("/v1/agent/service/register", { method: "PUT", body: "{}" });
        assert.deepEqual([noName.status, await noName.text()], [400, "Missing service name"]);
      });

      await t.step(
        "CA rotation: the roots watch fires with both roots; new leaves chain to both",
        async () => {
          const before = (await client.roots()).value;
          const ac = new AbortController();
          const it = client.watchRoots().subscribe(ac.signal);
          await it.next();
          const cfg = await operator.caConfiguration();
          assert.equal(cfg.Provider, "consul");
          await operator.setCAConfiguration({
            Provider: "consul",
            Config: { ...cfg.Config, PrivateKeyType: "ec", PrivateKeyBits: 384 },
          });
          // The roots may arrive in more than one step: wait for the settled state.
          const settled = (r: typeof before) =>
            r.ActiveRootID !== before.ActiveRootID && r.Roots.length === 2 &&
            r.Roots.find((x) => x.ID === r.ActiveRootID)?.Active === true;
          let after = (await next(it, 30_000)).value;
          while (!settled(after)) after = (await next(it, 30_000)).value;
          ac.abort();
          await it.return?.();
          // Consul 1.22.7 lists roots sorted by ID, not "the most recently activated last" as
          // the spec read it: find them by ID.
          assert.deepEqual(after.Roots.map((r) => r.ID), after.Roots.map((r) => r.ID).sort());
          const fresh = after.Roots.find((r) => r.ID === after.ActiveRootID)!;
          const old = after.Roots.find((r) => r.ID === before.ActiveRootID)!;
          assert.equal(old.Active, false);
          assert.equal(fresh.PrivateKeyBits, 384);
          assert.equal(fresh.IntermediateCerts?.length, 1);
          const oldRoot = await parseCertificate(old.RootCert);
          const newRoot = await parseCertificate(fresh.RootCert);
          const cross = await parseCertificate(fresh.IntermediateCerts![0]);
          assert.equal(cross.subjectKeyId, newRoot.subjectKeyId);
          assert.equal(cross.authorityKeyId, oldRoot.subjectKeyId);
          // A non-blocking read revalidates against the new active root.
          await eventually(
            async () => {
              const leaf = await parseCertificate((await client.leaf("web")).value.CertPEM);
              return leaf.authorityKeyId === fresh.SigningKeyID;
            },
            45_000,
            "a leaf signed by the new root",
          );
          const leaf = (await client.leaf("web")).value;
          const leafInfo = await parseCertificate(leaf.CertPEM);
          await verifyChain(leafInfo, [], [newRoot]);
          await verifyChain(leafInfo, [cross], [oldRoot]);
        },
      );
      await client.close();
    },
  });
}

contract("test double", () => devAgent({ blockingJitter: false }));

const binary = consulBinary();
if (!binary) announceSkip("tests/integration/contract_test.ts");
contract("real consul agent", () => startConsul(), !binary);
