// httpOverConnections over real loopback sockets (plain TCP stands in for the gateway's TLS
// socket: this layer only parses HTTP on what it is handed): requests reach the handler whole,
// with the caller; responses go back whole; errors, HEAD, cookies, keep-alive, backpressure and
// a client that goes away.
import assert from "node:assert/strict";
import net from "node:net";
import { createLogger } from "../../src/net/log.ts";
import {
  type HttpOverConnections,
  httpOverConnections,
  type MeshHandler,
} from "../../src/native/http_server.ts";
import { formatSpiffeId, serviceSpiffeId } from "../../src/trust/spiffe.ts";

const TD = "11111111-2222-3333-4444-555555555555.consul";
const WEB = serviceSpiffeId({ trustDomain: TD, datacenter: "dc1", service: "web" });
type Handed = Parameters<HttpOverConnections["accept"]>[0];

/** A TCP listener whose connections are handed to the layer, as the gateway hands them. */
async function serve(handler: MeshHandler, options = {}) {
  const logs: string[] = [];
  const log = createLogger({ write: (l) => logs.push(l), json: true });
  const layer = httpOverConnections(handler, log, options);
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    layer.accept({
      socket: socket as unknown as Handed["socket"],
      caller: { spiffeId: formatSpiffeId(WEB), id: WEB, serial: "0a" },
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    logs,
    connections: () => connections,
    async close() {
      layer.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

Deno.test("http over connections: the request reaches the handler whole, with its caller", async () => {
  const seen: Record<string, unknown>[] = [];
  const s = await serve(async (req, info) => {
    seen.push({
      method: req.method,
      url: req.url,
      accept: req.headers.get("accept"),
      multi: req.headers.get("x-multi"),
      body: await req.text(),
      caller: info.caller.id.service,
      remoteIsLoopback: info.remote.startsWith("127.0.0.1:"),
    });
    return new Response("created", { status: 201, headers: { "x-answer": "42" } });
  });
  try {
    const headers = new Headers({ accept: "text/plain" });
    headers.append("x-multi", "a");
    headers.append("x-multi", "b");
    const res = await fetch(`${s.url}/orders?id=7&x=%20`, {
      method: "POST",
      headers,
      body: "é".repeat(10_000),
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("x-answer"), "42");
    assert.equal(await res.text(), "created");
    assert.deepEqual(seen, [{
      method: "POST",
      url: `https://127.0.0.1:${new URL(s.url).port}/orders?id=7&x=%20`,
      accept: "text/plain",
      multi: "a, b",
      body: "é".repeat(10_000),
      caller: "web",
      remoteIsLoopback: true,
    }]);
  } finally {
    await s.close();
  }
});

Deno.test("http over connections: a handler that throws is a 500 and one log line with the caller", async () => {
  const s = await serve(() => {
    throw new Error("db is down");
  });
  try {
    const res = await fetch(`${s.url}/`);
    assert.equal(res.status, 500);
    assert.equal(await res.text(), "Internal Server Error");
    assert.equal(s.logs.length, 1);
    const line = JSON.parse(s.logs[0]!);
    assert.equal(line["@message"], "mesh handler failed");
    assert.equal(line.error, "Error: db is down");
    assert.equal(line.caller, formatSpiffeId(WEB));
  } finally {
    await s.close();
  }
});

Deno.test("http over connections: Set-Cookie headers stay apart; HEAD has no body", async () => {
  const s = await serve(() => {
    const h = new Headers();
    h.append("set-cookie", "a=1; Path=/");
    h.append("set-cookie", "b=2; Path=/");
    return new Response("body text", { headers: h });
  });
  try {
    const res = await fetch(`${s.url}/`);
    assert.deepEqual(res.headers.getSetCookie(), ["a=1; Path=/", "b=2; Path=/"]);
    await res.body?.cancel();
    const head = await fetch(`${s.url}/`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
  } finally {
    await s.close();
  }
});

Deno.test("http over connections: keep-alive — sequential requests share one connection", async () => {
  let n = 0;
  const s = await serve(() => new Response(String(++n)));
  try {
    for (let i = 1; i <= 3; i++) assert.equal(await (await fetch(`${s.url}/`)).text(), String(i));
    assert.equal(s.connections(), 1);
  } finally {
    await s.close();
  }
});

Deno.test("http over connections: a large streamed response arrives whole (backpressure)", async () => {
  const total = 16 * 1024 * 1024;
  const s = await serve(() => {
    let sent = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(c) {
          if (sent >= total) return c.close();
          const chunk = new Uint8Array(256 * 1024).fill(sent / (256 * 1024) % 251);
          sent += chunk.length;
          c.enqueue(chunk);
        },
      }),
    );
  });
  try {
    const res = await fetch(`${s.url}/big`);
    let got = 0;
    let ok = true;
    for await (const chunk of res.body!) {
      for (let i = 0; i < chunk.length; i += 4096) {
        ok &&= chunk[i] === Math.floor((got + i) / (256 * 1024)) % 251;
      }
      got += chunk.length;
    }
    assert.equal(got, total);
    assert.ok(ok, "the bytes arrive in order");
  } finally {
    await s.close();
  }
});

Deno.test("http over connections: a client that goes away aborts the handler's request signal", async () => {
  const aborted = Promise.withResolvers<string>();
  const s = await serve((req) => {
    req.signal.addEventListener("abort", () => aborted.resolve(String(req.signal.reason)));
    // A response that never ends.
    return new Response(
      new ReadableStream({
        start(c) {
          c.enqueue(new Uint8Array(1));
        },
      }),
    );
  });
  try {
    const ac = new AbortController();
    const res = await fetch(`${s.url}/stream`, { signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await reader.cancel().catch(() => {});
    assert.match(await aborted.promise, /client went away/);
  } finally {
    await s.close();
  }
});

Deno.test("httpOverConnections refuses a keep-alive timeout that is not a number >= 0", () => {
  for (const bad of [-1, NaN, Infinity]) {
    assert.throws(
      () => httpOverConnections(() => new Response(), createLogger(), { keepAliveTimeoutMs: bad }),
      (e) =>
        e instanceof RangeError &&
        e.message === `serve: keepAliveTimeoutMs must be a number >= 0: current value is ${bad}`,
      String(bad),
    );
  }
  httpOverConnections(() => new Response(), createLogger(), { keepAliveTimeoutMs: 0 }).close();
});
