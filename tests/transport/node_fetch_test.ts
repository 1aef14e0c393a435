// The node:http(s) fetch behind agent TLS and unix sockets: an abort or a timeout ends the request
// at once, even on a reused keep-alive socket (Deno 2.9's req.destroy() does not settle it there).
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { AgentClient } from "../../src/agent/client.ts";
import { AgentNetworkError } from "../../src/agent/errors.ts";
import { createNodeFetch } from "../../src/transport/node_fetch.ts";
import { pki } from "./_pki.ts";

/**
 * An HTTP/1.1 server (plain or TLS) with keep-alive that answers `GET /answer` and holds every
 * `GET /hold`, on any connection, unanswered until `release()` answers them.
 */
async function holdingServer(tlsOptions?: { cert: string; key: string }) {
  const held: net.Socket[] = [];
  const sockets: net.Socket[] = [];
  const closed = new Set<net.Socket>();
  let releasedAt: number | undefined;
  const onConnection = (s: net.Socket) => {
    sockets.push(s);
    s.on("error", () => {});
    s.on("close", () => closed.add(s));
    let buf = "";
    s.on("data", (d: Uint8Array | string) => {
      buf += typeof d === "string" ? d : new TextDecoder().decode(d);
      let end;
      while ((end = buf.indexOf("\r\n\r\n")) >= 0) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        if (!head.startsWith("GET /hold")) {
          s.write(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n" +
              "Connection: keep-alive\r\n\r\ntrue",
          );
        } else held.push(s);
      }
    });
  };
  const server = tlsOptions
    ? tls.createServer({ ...tlsOptions }, onConnection)
    : net.createServer(onConnection);
  server.on("tlsClientError", () => {});
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    held,
    closed,
    get releasedAt() {
      return releasedAt;
    },
    /** Answers every held request (a late answer the client must not be waiting for). */
    release() {
      releasedAt = performance.now();
      for (const s of held) {
        if (!s.destroyed) s.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate");
      }
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

type Holding = Awaited<ReturnType<typeof holdingServer>>;

/**
 * Makes a first request (answered; leaves a keep-alive socket in the pool), then a second on the
 * same socket that the server holds, stopped at 300 ms by an abort (`stop`) or the request's own
 * timeout. The server answers the held request only at 3 s.
 */
async function settlesBeforeTheServerAnswers(
  server: Holding,
  what: string,
  doFetch: (path: string, signal: AbortSignal | undefined) => Promise<unknown>,
  stop: "abort" | "timeout",
) {
  assert.equal(await doFetch("/answer", undefined), true, "the first request is answered");
  // Let the pool take the socket back (it does so after the response's end, asynchronously).
  await new Promise((r) => setTimeout(r, 50));
  const controller = new AbortController();
  const started = performance.now();
  let settledAt: number | undefined;
  const second = doFetch("/hold", stop === "abort" ? controller.signal : undefined).then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  ).finally(() => (settledAt = performance.now()));
  const abortTimer = setTimeout(() => controller.abort(new Error("stopped by the test")), 300);
  const releaseTimer = setTimeout(() => server.release(), 3000);
  try {
    const outcome = await second;
    assert.equal(server.held[0], server.sockets[0], `sent on the first, reused socket (${what})`);
    assert.ok(!outcome.ok, `the request failed instead of getting the late answer (${what})`);
    assert.equal(server.releasedAt, undefined, "it settled before the server ever answered");
    assert.ok(settledAt! - started < 1500, `settled ${Math.round(settledAt! - started)} ms in`);
    // Nothing was sent again behind our back (Deno's node:http retries a request whose reused
    // socket closes, on a new connection, which is how an abort used to turn into a long wait).
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(server.held.length, 1, "the request was sent once");
    return outcome.e;
  } finally {
    clearTimeout(abortTimer);
    clearTimeout(releaseTimer);
  }
}

for (const secure of [false, true]) {
  const scheme = secure ? "https" : "http";

  Deno.test({
    name: `node fetch (${scheme}): an abort on a reused keep-alive socket ends the request at once`,
    sanitizeResources: false, // node:http(s) closes pooled sockets asynchronously
    async fn() {
      const p = await pki({ withLoopback: true });
      const server = await holdingServer(secure ? p.server : undefined);
      const f = createNodeFetch(secure ? { ca: p.ca } : {});
      const base = `${scheme}://127.0.0.1:${server.port}`;
      try {
        const err = await settlesBeforeTheServerAnswers(
          server,
          `${scheme} abort`,
          (path, signal) => f(base + path, { signal }).then((r) => r.json()),
          "abort",
        );
        assert.ok(err instanceof Error && err.message === "stopped by the test", String(err));
        // The socket is destroyed, not handed back to the pool with a request in flight.
        const [socket] = server.sockets;
        assert.ok(socket, "the request reached the server");
        const deadline = Date.now() + 2000;
        while (!server.closed.has(socket) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 10));
        }
        assert.ok(server.closed.has(socket), "the aborted socket was closed");
        // And the pool still works: a new request gets a new connection and an answer.
        assert.equal(await f(`${base}/answer`).then((r) => r.json()), true);
        assert.equal(server.sockets.length, 2);
      } finally {
        f.close();
        await server.close();
      }
    },
  });

  Deno.test({
    name: `node fetch (${scheme}): the client's timeoutMs ends a held request on a reused socket`,
    sanitizeResources: false,
    async fn() {
      const p = await pki({ withLoopback: true });
      const server = await holdingServer(secure ? p.server : undefined);
      const f = createNodeFetch(secure ? { ca: p.ca } : {});
      const agent = new AgentClient({ address: `${scheme}://127.0.0.1:${server.port}`, fetch: f });
      try {
        const err = await settlesBeforeTheServerAnswers(
          server,
          `${scheme} timeoutMs`,
          (path) =>
            agent.request({ method: "GET", path, decode: (j) => j }, { timeoutMs: 300 })
              .then((r) => r.value),
          "timeout",
        );
        assert.ok(err instanceof AgentNetworkError, String(err));
        assert.match(err.message, /no answer within 300 ms/);
      } finally {
        await agent.close();
        await server.close();
      }
    },
  });
}

Deno.test({
  name: "node fetch: an abort before the socket is assigned, and during the body, also settles",
  sanitizeResources: false,
  async fn() {
    // A server that sends headers and part of the body, then stalls.
    const server = net.createServer((s) => {
      s.on("error", () => {});
      s.once("data", () => {
        s.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    const f = createNodeFetch({});
    try {
      const already = AbortSignal.abort(new Error("before"));
      await assert.rejects(f(`http://127.0.0.1:${port}/`, { signal: already }), /before/);
      // Aborted synchronously right after the call: no socket yet.
      const c1 = new AbortController();
      const p1 = f(`http://127.0.0.1:${port}/`, { signal: c1.signal });
      c1.abort(new Error("at once"));
      await assert.rejects(p1, /at once/);
      // Aborted while the body is arriving.
      const c2 = new AbortController();
      const p2 = f(`http://127.0.0.1:${port}/`, { signal: c2.signal });
      const t = setTimeout(() => c2.abort(new Error("mid-body")), 300);
      await assert.rejects(p2, /mid-body/);
      clearTimeout(t);
    } finally {
      f.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  },
});

Deno.test({
  name: "node fetch: TLS failures name the agent's address, what failed and the setting to check",
  sanitizeResources: false,
  async fn() {
    const p = await pki({ withLoopback: true });
    const other = await pki();
    const server = tls.createServer({
      cert: p.server.cert,
      key: p.server.key,
      ca: [p.ca],
      requestCert: true,
      rejectUnauthorized: true,
    }, (s) => {
      s.on("error", () => {});
      s.on(
        "data",
        () => s.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
      );
    });
    server.on("tlsClientError", () => {});
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const origin = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const failure = async (o: Parameters<typeof createNodeFetch>[0], url = `${origin}/v1/x`) => {
      const f = createNodeFetch(o);
      try {
        const agent = new AgentClient({ address: new URL(url).origin, fetch: f });
        const err = await agent.request({ method: "GET", path: "/v1/x", decode: (j) => j })
          .then(() => undefined, (e) => e);
        assert.ok(err instanceof AgentNetworkError, `expected a network error, got ${err}`);
        return err.message;
      } finally {
        f.close();
      }
    };
    const client = { cert: p.client.cert, key: p.client.key };
    try {
      const escaped = origin.replace(/[.:/]/g, "\\$&");
      assert.match(
        await failure({ ca: other.ca, ...client }),
        new RegExp(
          `^GET /v1/x: agent unreachable: ${escaped}: TLS handshake failed: ` +
            "the agent's certificate is not trusted .*CONSUL_CACERT",
        ),
      );
      assert.match(
        await failure({ ca: p.ca }),
        new RegExp(`${escaped}: TLS handshake failed: the agent requires a client certificate`),
      );
      assert.match(
        await failure({ ca: p.ca, ...client, serverName: "other.consul" }),
        new RegExp(`${escaped}: TLS handshake failed: .*does not name.*CONSUL_TLS_SERVER_NAME`),
      );
      assert.match(
        await failure({}, `${origin.replace("https", "http")}/v1/x`),
        /http:\/\/127\.0\.0\.1:\d+: not an HTTP answer .*https:\/\/ address or CONSUL_HTTP_SSL=true/,
      );
      // The right settings work.
      const f = createNodeFetch({ ca: p.ca, ...client });
      assert.equal(await (await f(`${origin}/v1/x`)).text(), "ok");
      f.close();
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  },
});

Deno.test({
  name:
    "node fetch: method, headers and a UTF-8 body go out whole; status, headers and body come back",
  sanitizeResources: false, // keep-alive sockets of node:http close asynchronously
  async fn() {
    const seen: { method: string; length: string | null; token: string | null; body: string }[] =
      [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      seen.push({
        method: req.method,
        length: req.headers.get("content-length"),
        token: req.headers.get("x-consul-token"),
        body: await req.text(),
      });
      const path = new URL(req.url).pathname;
      if (path === "/empty") return new Response(null, { status: 204 });
      const headers = new Headers({ "X-Consul-Index": "42", "content-type": "application/json" });
      headers.append("Set-Cookie", "a=1");
      headers.append("Set-Cookie", "b=2");
      return new Response('{"ok":"✓"}', { status: 201, headers });
    });
    const f = createNodeFetch({});
    try {
      const base = `http://127.0.0.1:${server.addr.port}`;
      const body = JSON.stringify({ Name: "wéb ✓" });
      const res = await f(`${base}/v1/agent/service/register?replace-existing-checks=true`, {
        method: "PUT",
        headers: { "X-Consul-Token": "t0k" },
        body,
      });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get("x-consul-index"), "42");
      assert.equal(res.headers.get("set-cookie"), "a=1, b=2");
      assert.deepEqual(await res.json(), { ok: "✓" });
      assert.deepEqual(seen[0], {
        method: "PUT",
        length: String(new TextEncoder().encode(body).length), // bytes, not characters
        token: "t0k",
        body,
      });
      const empty = await f(`${base}/empty`);
      assert.equal(empty.status, 204);
      assert.equal(empty.body, null);
      assert.equal(seen[1]!.method, "GET");
      assert.equal(seen[1]!.length, null, "no body, no length");
    } finally {
      f.close();
      await server.shutdown();
    }
  },
});

Deno.test("node fetch: a refused connection names the address; a unix socket names its path", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  const f = createNodeFetch({});
  const unix = createNodeFetch({ socketPath: "/nonexistent/consul.sock" });
  try {
    await assert.rejects(
      f(`http://127.0.0.1:${port}/v1/agent/self`),
      (e: Error & { code?: string }) =>
        e.message.startsWith(`http://127.0.0.1:${port}: `) && e.code === "ECONNREFUSED" &&
        e.cause instanceof Error,
    );
    await assert.rejects(
      unix("http://localhost/v1/agent/self"),
      /^Error: unix:\/\/\/nonexistent\/consul\.sock: /,
    );
  } finally {
    f.close();
    unix.close();
  }
});

Deno.test({
  name: "node fetch: a Request as input sends its method, headers, body and signal, as fetch does",
  sanitizeResources: false, // keep-alive sockets of node:http close asynchronously
  async fn() {
    const seen: { method: string; token: string | null; kind: string | null; body: string }[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      seen.push({
        method: req.method,
        token: req.headers.get("x-consul-token"),
        kind: req.headers.get("x-kind"),
        body: await req.text(),
      });
      return new Response("ok");
    });
    const f = createNodeFetch({});
    try {
      const url = `http://127.0.0.1:${server.addr.port}/v1/agent/service/register`;
      const body = JSON.stringify({ Name: "wéb ✓" });
      const request = new Request(url, {
        method: "PUT",
        headers: { "X-Consul-Token": "t0k" },
        body,
      });
      assert.equal(await (await f(request)).text(), "ok");
      assert.deepEqual(seen[0], { method: "PUT", token: "t0k", kind: null, body });
      // init wins where it says something (fetch's rule): its headers replace the Request's.
      const again = new Request(url, { method: "PUT", headers: { "X-Consul-Token": "t0k" }, body });
      await (await f(again, { method: "POST", headers: { "X-Kind": "init" } })).text();
      assert.deepEqual(seen[1], { method: "POST", token: null, kind: "init", body });
      // A byte body goes out as its bytes.
      await (await f(url, { method: "PUT", body: new TextEncoder().encode(body) })).text();
      assert.equal(seen[2]!.body, body);
      // The Request's own signal stops it.
      const aborted = new Request(url, {
        signal: AbortSignal.abort(new Error("request's signal")),
      });
      await assert.rejects(f(aborted), /request's signal/);
      assert.equal(seen.length, 3, "an aborted Request is never sent");
    } finally {
      f.close();
      await server.shutdown();
    }
  },
});
