// A fixed-rate load for bench/workers.ts: opens RATE new connections per second to PORT for
// SECONDS, each sending one `GET /1k` with `Connection: close` and reading the answer to its end,
// without waiting for one to finish before the next starts (an open-loop load: the rate does not
// drop when the proxy slows down). Prints one JSON line: {"ok": n, "failed": n, "seconds": s}.
// Env: PORT, RATE, SECONDS.

const port = Number(Deno.env.get("PORT"));
const rate = Number(Deno.env.get("RATE"));
const seconds = Number(Deno.env.get("SECONDS"));
const request = new TextEncoder().encode(
  "GET /1k HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
);

/** One request on a new connection: true when an HTTP 200 answer arrived in full. */
async function once(): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(request);
    const buf = new Uint8Array(4096);
    let head = "";
    let total = 0;
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      if (head.length < 12) head += new TextDecoder().decode(buf.subarray(0, n));
      total += n;
    }
    return head.startsWith("HTTP/1.1 200") && total > 1024;
  } catch {
    return false;
  } finally {
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

const started = performance.now();
const pending: Promise<boolean>[] = [];
const total = Math.round(rate * seconds);
for (let i = 0; i < total; i++) {
  // Start connection i at its slot in the schedule, whatever the earlier ones are doing.
  const due = started + (i * 1000) / rate;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  pending.push(once());
}
const results = await Promise.all(pending);
const ok = results.filter(Boolean).length;
console.log(JSON.stringify({
  ok,
  failed: results.length - ok,
  seconds: (performance.now() - started) / 1000,
}));
