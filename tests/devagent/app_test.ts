// The double's composition (src/devagent/app.ts): one route module per API area on hono's
// router, the answers every path shares, and what the double may import.
import assert from "node:assert/strict";
import { call, double } from "./routes/_double.ts";

Deno.test("app: every API area is mounted", async () => {
  await using dev = await double();
  const paths: [string, string, unknown?][] = [
    ["GET", "/v1/agent/self"],
    ["GET", "/v1/agent/services"],
    ["GET", "/v1/agent/connect/ca/roots"],
    ["GET", "/v1/agent/connect/ca/leaf/web"],
    ["GET", "/v1/connect/ca/configuration"],
    ["POST", "/v1/agent/connect/authorize", {
      Target: "db",
      ClientCertURI: `spiffe://${dev.ca.trustDomain}/ns/default/dc/dc1/svc/web`,
    }],
    ["GET", "/v1/health/connect/web"],
    ["GET", "/v1/connect/intentions"],
    ["GET", "/v1/discovery-chain/web"],
    ["PUT", "/v1/config", { Kind: "service-defaults", Name: "web", Protocol: "tcp" }],
    ["POST", "/v1/query", { Name: "q", Service: { Service: "web" } }],
    ["POST", "/v1/devagent/rotate"],
  ];
  for (const [method, path, body] of paths) {
    assert.equal((await call(dev, method, path, body)).status, 200, `${method} ${path}`);
  }
});

Deno.test("app: unknown paths are Consul's plain-text 404, whatever the method", async () => {
  await using dev = await double();
  for (const [method, path] of [["GET", "/v1/nope"], ["PUT", "/"], ["GET", "/v1/agent/self/"]]) {
    const r = await call(dev, method!, path!);
    assert.deepEqual(
      [r.status, r.text, r.headers.get("Content-Type")],
      [404, "Invalid URL path: not a recognized HTTP API endpoint", "text/plain; charset=utf-8"],
      `${method} ${path}`,
    );
  }
  const head = await dev.app.request("/v1/nope", { method: "HEAD" });
  assert.equal(head.status, 404);
  // Routes match the path as sent: an encoded fixed segment is not that segment.
  assert.equal((await call(dev, "GET", "/v1/agent/%73elf")).status, 404);
});

Deno.test("app: the default ACL policy header is on every answer", async () => {
  await using dev = await double({ defaultAllow: false });
  const answers = [
    await call(dev, "GET", "/v1/agent/self"),
    await call(dev, "GET", "/v1/nope"),
    await call(dev, "PUT", "/v1/agent/self"),
    await call(dev, "OPTIONS", "/v1/agent/self"),
    await call(dev, "GET", "/v1/agent/connect/ca/roots?wait=zz"),
  ];
  assert.deepEqual(answers.map((r) => r.status), [200, 404, 405, 200, 400]);
  for (const r of answers) assert.equal(r.headers.get("X-Consul-Default-ACL-Policy"), "deny");
  dev.intentions.defaultAllow = true;
  const now = await call(dev, "GET", "/v1/agent/self");
  assert.equal(now.headers.get("X-Consul-Default-ACL-Policy"), "allow", "read per request");
});

Deno.test("app: an unexpected error is a plain-text 500 with its message", async () => {
  await using dev = await double();
  const r = await call(dev, "POST", "/v1/devagent/faults", "null");
  assert.equal(r.status, 500);
  assert.match(r.headers.get("Content-Type")!, /^text\/plain/);
  assert.equal(r.text, "fault.path must be a string");
});

Deno.test("app: the double imports neither the proxy's nor the library's code it is meant to check", async () => {
  const src = new URL("../../src/", import.meta.url);
  const forbidden = ["intentions", "inbound", "outbound", "proxy", "native", "runtime", "admin"]
    .map((dir) => new URL(`${dir}/`, src).href);
  const offenders: string[] = [];
  let files = 0;
  const walk = async (dir: URL) => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) await walk(new URL(`${entry.name}/`, dir));
      if (!entry.name.endsWith(".ts")) continue;
      files++;
      const file = new URL(entry.name, dir);
      const code = (await Deno.readTextFile(file))
        .replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
      for (const m of code.matchAll(/from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']/g)) {
        const spec = m[1] ?? m[2] ?? "";
        if (!spec.startsWith(".")) continue;
        const target = new URL(spec, file).href;
        if (forbidden.some((dir) => target.startsWith(dir))) {
          offenders.push(`${file.href.slice(src.href.length)}: ${spec}`);
        }
      }
    }
  };
  await walk(new URL("devagent/", src));
  assert.ok(files >= 20, `expected the double's modules, found ${files}`);
  assert.deepEqual(offenders, []);
});
