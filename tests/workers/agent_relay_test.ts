// The agent relay: identical calls of several threads become one agent request.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { AgentError, AgentNetworkError } from "../../src/agent/errors.ts";
import { AgentRelay } from "../../src/workers/agent_relay.ts";
import { relayFetch } from "../../src/workers/relay_fetch.ts";
import { devAgent, eventually, next } from "../_helpers.ts";

const FAST = { minIntervalMs: 0, backoffBaseMs: 20, backoffMaxMs: 200 };
const ROOTS = "/v1/agent/connect/ca/roots";

/** A transport that records every request it sends and how many wait at once. */
function recording(inner: (input: URL | string, init: RequestInit) => Promise<Response> = fetch) {
  const sent: { method: string; path: string; index?: string; hash?: string; body?: string }[] = [];
  const waiting = new Map<string, number>();
  const most = new Map<string, number>();
  const transport = async (input: URL | string, init: RequestInit) => {
    const url = new URL(String(input));
    const index = url.searchParams.get("index") ?? undefined;
    const hash = url.searchParams.get("hash") ?? undefined;
    sent.push({
      method: init.method ?? "GET",
      path: url.pathname,
      index,
      hash,
      body: typeof init.body === "string" ? init.body : undefined,
    });
    const blocking = index !== undefined || hash !== undefined;
    const key = url.pathname;
    if (blocking) {
      waiting.set(key, (waiting.get(key) ?? 0) + 1);
      most.set(key, Math.max(most.get(key) ?? 0, waiting.get(key)!));
    }
    try {
      return await inner(input, init);
    } finally {
      if (blocking) waiting.set(key, waiting.get(key)! - 1);
    }
  };
  return {
    transport,
    sent,
    /** Blocking requests for `path` sent to the agent, by the version they waited past. */
    blockingVersions: (path: string) =>
      sent.filter((s) => s.path === path && (s.index ?? s.hash) !== undefined)
        .map((s) => s.index ?? s.hash!),
    /** Most blocking requests for `path` the agent held at once. */
    mostAtOnce: (path: string) => most.get(path) ?? 0,
    /** Blocking requests for `path` the agent holds now. */
    atOnce: (path: string) => waiting.get(path) ?? 0,
  };
}

/** A relay with the main thread's client on it and one "worker" client on a MessageChannel. */
function threads(address: string, transport: Parameters<typeof recording>[0]) {
  const relay = new AgentRelay({ fetch: transport });
  const { port1, port2 } = new MessageChannel();
  const stopServing = relay.serve(port1);
  const main = new AgentClient({ address, fetch: relay.fetch, watchDefaults: FAST });
  const worker = new AgentClient({ address, fetch: relayFetch(port2), watchDefaults: FAST });
  return {
    relay,
    main,
    worker,
    async [Symbol.asyncDispose]() {
      await worker.close();
      await main.close();
      stopServing();
      relay.close();
    },
  };
}

Deno.test("two threads watching the roots cost the agent one blocking query per version", async () => {
  await using dev = await devAgent();
  const rec = recording();
  await using t = threads(dev.address, rec.transport);
  const stop = new AbortController();
  const a = t.main.watchRoots().subscribe(stop.signal)[Symbol.asyncIterator]();
  const b = t.worker.watchRoots().subscribe(stop.signal)[Symbol.asyncIterator]();
  const [first, second] = [await next(a), await next(b)];
  assert.equal(first.value.ActiveRootID, second.value.ActiveRootID);
  await eventually(() => rec.atOnce(ROOTS) === 1, 5000, "the shared blocking query");
  await dev.rotateCA();
  const [na, nb] = [await next(a), await next(b)];
  assert.notEqual(na.value.ActiveRootID, first.value.ActiveRootID);
  assert.equal(na.value.ActiveRootID, nb.value.ActiveRootID);
  await eventually(() => rec.atOnce(ROOTS) === 1, 5000, "the next shared blocking query");
  stop.abort();
  await Promise.all([a.return?.(), b.return?.()]);
  assert.equal(rec.mostAtOnce(ROOTS), 1);
  const versions = rec.blockingVersions(ROOTS);
  assert.ok(versions.length >= 2, `blocking requests: ${versions}`);
  assert.equal(new Set(versions).size, versions.length, `a version asked twice: ${versions}`);
  assert.ok(t.relay.stats.joined + t.relay.stats.current >= 2, JSON.stringify(t.relay.stats));
});

Deno.test("without the relay the same two watches cost two blocking queries (the test's control)", async () => {
  await using dev = await devAgent();
  const rec = recording();
  const a = new AgentClient({
    address: dev.address,
    fetch: rec.transport as typeof fetch,
    watchDefaults: FAST,
  });
  const b = new AgentClient({
    address: dev.address,
    fetch: rec.transport as typeof fetch,
    watchDefaults: FAST,
  });
  const stop = new AbortController();
  const ia = a.watchRoots().subscribe(stop.signal)[Symbol.asyncIterator]();
  const ib = b.watchRoots().subscribe(stop.signal)[Symbol.asyncIterator]();
  await Promise.all([next(ia), next(ib)]);
  await eventually(() => rec.atOnce(ROOTS) === 2, 5000, "two blocking queries");
  stop.abort();
  await Promise.all([ia.return?.(), ib.return?.(), a.close(), b.close()]);
  const versions = rec.blockingVersions(ROOTS);
  assert.notEqual(new Set(versions).size, versions.length);
});

Deno.test("a read of a watched resource is answered at once from the current answer", async () => {
  await using dev = await devAgent();
  const rec = recording();
  await using t = threads(dev.address, rec.transport);
  const stop = new AbortController();
  const watch = t.main.watchRoots().subscribe(stop.signal)[Symbol.asyncIterator]();
  const seen = await next(watch);
  await eventually(() => rec.atOnce(ROOTS) === 1, 5000, "the blocking query");
  const before = rec.sent.length;
  // A worker that starts now: its first, non-blocking read, and a blocking one behind the times.
  const plain = await t.worker.roots();
  const behind = await t.worker.roots({ index: 1n, waitMs: 60_000 });
  assert.equal(rec.sent.length, before, "no agent request");
  assert.equal(plain.value.ActiveRootID, seen.value.ActiveRootID);
  assert.equal(plain.index, seen.index);
  assert.equal(behind.index, seen.index);
  assert.equal(t.relay.stats.current, 2);
  stop.abort();
  await watch.return?.();
  // Nobody watches any more: the answer may be stale, so the next read asks the agent.
  await eventually(() => rec.atOnce(ROOTS) === 0, 5000, "the watch to end");
  await t.worker.roots();
  assert.equal(rec.sent.length, before + 1);
});

Deno.test("identical authorize calls in flight are joined; others are not", async () => {
  await using dev = await devAgent();
  const gate = Promise.withResolvers<void>();
  const rec = recording(async (input, init) => {
    if (new URL(String(input)).pathname === "/v1/agent/connect/authorize") await gate.promise;
    return fetch(input, init);
  });
  await using t = threads(dev.address, rec.transport);
  const { value: roots } = await t.main.roots();
  const web = `spiffe://${roots.TrustDomain}/ns/default/dc/dc1/svc/web`;
  const api = `spiffe://${roots.TrustDomain}/ns/default/dc/dc1/svc/api`;
  const req = { Target: "db", ClientCertURI: web, ClientCertSerial: "01" };
  const calls = [
    t.main.authorize(req),
    t.worker.authorize(req),
    t.worker.authorize({ ...req }),
    t.worker.authorize({ ...req, ClientCertURI: api }),
  ];
  await eventually(() => t.relay.stats.joined === 2, 5000, "the joins");
  gate.resolve();
  const answers = await Promise.all(calls);
  assert.deepEqual(answers.map((a) => a.Authorized), [true, true, true, true]);
  const authorizes = () => rec.sent.filter((s) => s.path === "/v1/agent/connect/authorize");
  assert.equal(authorizes().length, 2);
  assert.deepEqual(authorizes().map((s) => JSON.parse(s.body!).ClientCertURI).sort(), [api, web]);
  // Joined only while in flight: the next call asks again.
  await t.worker.authorize(req);
  assert.equal(authorizes().length, 3);
});

Deno.test("status, headers and body pass through the relay unchanged", async () => {
  await using dev = await devAgent();
  await using t = threads(dev.address, fetch);
  const removeFault = dev.faults.add({
    path: "/v1/agent/self",
    status: 500,
    body: "rpc error: No cluster leader",
  });
  const { port1, port2 } = new MessageChannel();
  const stop = t.relay.serve(port1);
  const worker = relayFetch(port2);
  const paths = [ROOTS, "/v1/agent/service/nope", "/v1/agent/self", "/v1/health/connect/db"];
  const strip = (h: Headers) =>
    [...h].filter(([k]) => !["date", "content-length"].includes(k)).sort();
  for (const path of paths) {
    const url = `${dev.url}${path}`;
    const direct = await fetch(url);
    const directBody = await direct.text();
    for (const via of [t.relay.fetch, worker]) {
      const res = await via(url);
      assert.equal(res.status, direct.status, path);
      assert.equal(res.statusText, direct.statusText, path);
      assert.deepEqual(strip(res.headers), strip(direct.headers), path);
      assert.equal(await res.text(), directBody, path);
    }
  }
  assert.ok(
    strip((await worker(`${dev.url}${ROOTS}`)).headers).some(([k]) => k === "x-consul-knownleader"),
  );
  // Through an AgentClient: the agent's error, with its status and text.
  const err = await t.worker.self().catch((e) => e);
  assert.ok(err instanceof AgentError);
  assert.equal(err.status, 500);
  assert.match(err.message, /No cluster leader/);
  removeFault();
  worker.close();
  stop();
});

Deno.test("a transport error reaches every caller as an error", async () => {
  let attempts = 0;
  const relay = new AgentRelay({
    fetch: async () => {
      attempts++;
      await new Promise((r) => setTimeout(r, 20));
      throw new TypeError("error sending request: Connection refused (os error 111)");
    },
  });
  const { port1, port2 } = new MessageChannel();
  const stop = relay.serve(port1);
  const main = new AgentClient({ address: "127.0.0.1:1", fetch: relay.fetch });
  const worker = new AgentClient({ address: "127.0.0.1:1", fetch: relayFetch(port2) });
  const errors = await Promise.all([main.roots(), worker.roots()].map((p) => p.catch((e) => e)));
  for (const err of errors) {
    assert.ok(err instanceof AgentNetworkError, String(err));
    assert.match(err.message, /Connection refused/);
  }
  assert.equal(attempts, 1, "joined");
  await worker.close();
  await main.close();
  stop();
  relay.close();
});

Deno.test("a caller that aborts leaves; the agent request ends with its last caller", async () => {
  const aborted: string[] = [];
  const relay = new AgentRelay({
    fetch: (input, init) =>
      new Promise((_, reject) => {
        init.signal!.addEventListener("abort", () => {
          aborted.push(new URL(String(input)).searchParams.get("index") ?? "");
          reject(init.signal!.reason);
        });
      }),
  });
  const { port1, port2 } = new MessageChannel();
  const stop = relay.serve(port1);
  const worker = relayFetch(port2);
  const url = `http://127.0.0.1:1${ROOTS}?index=7&wait=60000ms`;
  const mine = new AbortController();
  const theirs = new AbortController();
  const a = worker(url, { signal: mine.signal });
  const b = relay.fetch(url, { signal: theirs.signal });
  await eventually(() => relay.stats.joined === 1, 5000, "the join");
  mine.abort(new DOMException("gone", "AbortError"));
  await assert.rejects(a, (e: Error) => e.name === "AbortError");
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(aborted, [], "another caller still waits");
  theirs.abort(new DOMException("gone too", "AbortError"));
  await assert.rejects(b, (e: Error) => e.name === "AbortError");
  await eventually(() => aborted.length === 1, 5000, "the agent request aborted");
  assert.equal(relay.stats.inFlight, 0);
  // A new call does not join the aborted request.
  const c = new AbortController();
  const again = worker(url, { signal: c.signal });
  await eventually(() => relay.stats.agentRequests === 2, 5000, "a new agent request");
  c.abort();
  await assert.rejects(again);
  worker.close();
  stop();
  relay.close();
});

Deno.test("closing the worker's fetch rejects its calls in flight and tells the relay", async () => {
  let signal: AbortSignal | undefined;
  const relay = new AgentRelay({
    fetch: (_input, init) =>
      new Promise((_, reject) => {
        signal = init.signal!;
        signal.addEventListener("abort", () => reject(signal!.reason));
      }),
  });
  const { port1, port2 } = new MessageChannel();
  const stop = relay.serve(port1);
  const worker = relayFetch(port2);
  const call = worker(`http://127.0.0.1:1${ROOTS}`);
  await eventually(() => signal !== undefined, 5000, "the agent request");
  worker.close();
  await assert.rejects(call, /closed/);
  await eventually(() => signal!.aborted, 5000, "the agent request aborted");
  await assert.rejects(worker(`http://127.0.0.1:1${ROOTS}`), /closed/);
  stop();
  relay.close();
});

Deno.test("a worker with the join table sends its own authorize calls, joined with the main thread's", async () => {
  await using dev = await devAgent();
  const gate = Promise.withResolvers<void>();
  const held =
    (inner: typeof fetch) => async (input: URL | Request | string, init?: RequestInit) => {
      if (new URL(String(input)).pathname === "/v1/agent/connect/authorize") await gate.promise;
      return inner(input, init);
    };
  const mainRec = recording(held(fetch));
  const workerRec = recording(held(fetch));
  const relay = new AgentRelay({ fetch: mainRec.transport });
  const { port1, port2 } = new MessageChannel();
  const stop = relay.serve(port1);
  const main = new AgentClient({ address: dev.address, fetch: relay.fetch });
  const wf = relayFetch(port2, { join: relay.joinTable, transport: workerRec.transport });
  const worker = new AgentClient({ address: dev.address, fetch: wf });
  const { value: roots } = await worker.roots(); // through the port, as before
  const req = {
    Target: "db",
    ClientCertURI: `spiffe://${roots.TrustDomain}/ns/default/dc/dc1/svc/web`,
    ClientCertSerial: "01",
  };
  const other = { ...req, ClientCertSerial: "02" };
  const mine = main.authorize(req);
  await eventually(() => mainRec.sent.some((s) => s.path.endsWith("/authorize")), 5000);
  const calls = [worker.authorize(req), worker.authorize(other)];
  await new Promise((r) => setTimeout(r, 50));
  gate.resolve();
  const answers = await Promise.all([mine, ...calls]);
  assert.deepEqual(answers.map((a) => a.Authorized), [true, true, true]);
  const authorizes = (rec: ReturnType<typeof recording>) =>
    rec.sent.filter((s) => s.path === "/v1/agent/connect/authorize").map((s) =>
      JSON.parse(s.body!).ClientCertSerial
    );
  assert.deepEqual(authorizes(mainRec), ["01"], "the main thread asked for 01");
  assert.deepEqual(authorizes(workerRec), ["02"], "the worker joined 01 and sent 02 itself");
  assert.equal(relay.stats.calls, 2, "roots and the main thread's authorize; none of the worker's");
  await worker.close();
  wf.close();
  await main.close();
  stop();
  relay.close();
});
