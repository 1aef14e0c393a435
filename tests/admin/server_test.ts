// startAdmin() (src/admin/server.ts): the admin app over real HTTP on loopback, for a
// Connect-native service of the test double. Where it binds decides whether a drain without a
// token is possible; a port it cannot have is an AdminBindError naming the address; close()
// ends open event streams and is safe to call twice.
import assert from "node:assert/strict";
import { AdminBindError, startAdmin } from "../../src/admin/server.ts";
import { connect } from "../../src/native/service.ts";
import { clientFor, devAgent } from "../_helpers.ts";

async function service() {
  const dev = await devAgent();
  const agent = clientFor(dev);
  const api = await connect({ service: "api", agent });
  return {
    api,
    async [Symbol.asyncDispose]() {
      await api.close();
      await agent.close();
      await dev.close();
    },
  };
}

const drainHeaders = { "X-Meshgate-Drain": "1" };

Deno.test("startAdmin: serves on 127.0.0.1 by default; close() ends event streams, twice is fine", async () => {
  await using s = await service();
  const admin = await startAdmin({ proxy: s.api, port: 0, tickMs: 50 });
  assert.equal(admin.address.hostname, "127.0.0.1");
  assert.ok(admin.address.port > 0);
  assert.equal(admin.url, `http://127.0.0.1:${admin.address.port}/`);
  const ready = await fetch(new URL("ready", admin.url));
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { ready: true, problems: [] });
  const page = await fetch(admin.url);
  assert.match(page.headers.get("content-type")!, /^text\/html/);
  await page.body?.cancel();

  // An open event stream ends when the server closes (it does not hold close() up).
  const events = await fetch(new URL("v1/events", admin.url));
  const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
  const first = await reader.read();
  assert.match(first.value ?? "", /^event: /);
  const closing = admin.close();
  assert.equal(admin.close(), closing, "every caller gets the same close");
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    closing,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("close() waited on the event stream")), 5000);
    }),
  ]).finally(() => clearTimeout(timer));
  // The stream is over: it ends, or the connection is cut under it.
  const end = await (async () => {
    while (!(await reader.read()).done) { /* what was sent before the end */ }
  })().then(() => "ended", (e: Error) => e.message);
  assert.match(end, /^(ended|error reading a body from connection)$/);
  await assert.rejects(fetch(admin.url), TypeError, "nothing listens any more");
});

Deno.test("startAdmin: a drain without a token needs a loopback bind", async () => {
  await using s = await service();
  let drains = 0;
  {
    await using local = await startAdmin({ proxy: s.api, port: 0, onDrain: () => drains++ });
    const res = await fetch(new URL("v1/drain", local.url), {
      method: "POST",
      headers: drainHeaders,
    });
    assert.equal(res.status, 202, await res.clone().text());
    await res.body?.cancel();
    assert.equal(drains, 1, "from 127.0.0.1 to 127.0.0.1 with the header");
  }
  {
    // Bound to every address: the same request is refused, naming what would allow it.
    await using exposed = await startAdmin({
      proxy: s.api,
      hostname: "0.0.0.0",
      port: 0,
      onDrain: () => drains++,
    });
    const res = await fetch(`http://127.0.0.1:${exposed.address.port}/v1/drain`, {
      method: "POST",
      headers: drainHeaders,
    });
    assert.equal(res.status, 403);
    assert.match((await res.json()).error, /not on loopback and has no -admin-token/);
    // With a token it drains (the caller's address is still checked: loopback here).
  }
  {
    await using guarded = await startAdmin({
      proxy: s.api,
      hostname: "0.0.0.0",
      port: 0,
      token: "s3cret",
      onDrain: () => drains++,
    });
    const res = await fetch(`http://127.0.0.1:${guarded.address.port}/v1/drain`, {
      method: "POST",
      headers: { Authorization: "Bearer s3cret" },
    });
    assert.equal(res.status, 202);
    await res.body?.cancel();
  }
  assert.equal(drains, 2);
});

Deno.test("startAdmin: an IPv6 loopback bind gets a bracketed URL and counts as loopback", async () => {
  await using s = await service();
  let drains = 0;
  await using admin = await startAdmin({
    proxy: s.api,
    hostname: "::1",
    port: 0,
    onDrain: () => drains++,
  });
  assert.equal(admin.url, `http://[::1]:${admin.address.port}/`);
  const res = await fetch(new URL("v1/drain", admin.url), {
    method: "POST",
    headers: drainHeaders,
  });
  assert.equal(res.status, 202);
  await res.body?.cancel();
  assert.equal(drains, 1);
});

Deno.test("startAdmin: a port in use or an address not ours is an AdminBindError naming it", async () => {
  await using s = await service();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  const inUse = await startAdmin({ proxy: s.api, port }).catch((e) => e);
  assert.ok(inUse instanceof AdminBindError, String(inUse));
  assert.equal(inUse.name, "AdminBindError");
  assert.equal(
    inUse.message,
    `cannot serve the admin app on 127.0.0.1:${port}: address already in use`,
  );
  assert.ok(inUse.cause instanceof Deno.errors.AddrInUse);

  // 192.0.2.1 (TEST-NET-1) is on no interface here; the OS's words, without "(os error N)".
  const foreign = await startAdmin({ proxy: s.api, hostname: "192.0.2.1", port: 0 }).catch((e) =>
    e
  );
  assert.ok(foreign instanceof AdminBindError, String(foreign));
  assert.match(foreign.message, /^cannot serve the admin app on 192\.0\.2\.1:0: \S/);
  assert.doesNotMatch(foreign.message, /os error/);
  // The same for an IPv6 address, in brackets.
  const v6 = await startAdmin({ proxy: s.api, hostname: "2001:db8::1", port: 0 }).catch((e) => e);
  assert.ok(v6 instanceof AdminBindError, String(v6));
  assert.match(v6.message, /^cannot serve the admin app on \[2001:db8::1\]:0: /);
});
