// The library examples, run as the README says: separate processes against an agent.
import assert from "node:assert/strict";
import { devAgent, eventually } from "./_helpers.ts";

const example = (name: string) => new URL(`../examples/${name}`, import.meta.url).pathname;

/** Runs an example with the agent's address; collects its output. */
function run(name: string, agentAddress: string, args: string[] = []) {
  const child = new Deno.Command(Deno.execPath(), {
    // The README's permissions for the examples: network and named variables only.
    args: [
      "run",
      "--allow-net",
      "--allow-env=CONSUL_HTTP_ADDR,PORT,SIDECAR_PORT",
      example(name),
      ...args,
    ],
    env: { CONSUL_HTTP_ADDR: agentAddress },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const collect = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s.pipeThrough(new TextDecoderStream())) out += c;
  };
  const done = Promise.all([collect(child.stdout), collect(child.stderr)]);
  return {
    child,
    get out() {
      return out;
    },
    async finish(): Promise<{ code: number; out: string }> {
      const { code } = await child.status;
      await done;
      return { code, out };
    },
    async stop(): Promise<void> {
      child.kill("SIGTERM");
      await child.status;
      await done;
    },
  };
}

Deno.test({
  name:
    "examples: native api + native client (web allowed, billing 403) + plain app behind a sidecar",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const api = run("native_api.ts", dev.address);
    const legacy = run("sidecar_app.ts", dev.address);
    try {
      await eventually(() => api.out.includes("listening on"), 30_000, "the api to listen");
      await eventually(() => legacy.out.includes("its meshgate sidecar on"), 30_000, "legacy");
      await eventually(
        () =>
          dev.catalog.healthConnect("api", true).length === 1 &&
          dev.catalog.healthConnect("legacy", true).length === 1,
        10_000,
        "both to be healthy",
      );

      const web = await run("native_client.ts", dev.address).finish();
      assert.equal(web.code, 0, web.out);
      assert.match(web.out, /calling as spiffe:\/\/.*\/svc\/web/);
      assert.match(web.out, /POST \/orders → 201 \{"item":"green tea","by":"web"\}/);
      assert.match(web.out, /GET \/orders → 200 \{"orders":\[\{"item":"green tea","by":"web"\}\]/);

      const billing = await run("native_client.ts", dev.address, ["--as", "billing"]).finish();
      assert.match(billing.out, /POST \/orders → 403 /, billing.out);
      assert.match(billing.out, /GET \/orders → 200 .*"caller":"billing"/);

      const viaSidecar = await run("native_client.ts", dev.address, [
        "--get",
        "http://legacy.service.consul/",
      ]).finish();
      assert.match(viaSidecar.out, /→ 200 hello from a plain app behind a meshgate sidecar/);
    } finally {
      await api.stop();
      await legacy.stop();
    }
    assert.equal(dev.catalog.get("api-native"), undefined, "the api deregistered on SIGTERM");
  },
});
