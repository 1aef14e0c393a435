// Load through a proxy pair (web's upstream → mTLS → db's sidecar → echo app): many concurrent
// connections, connection churn with an authorize call each, and a CA rotation plus a config
// change in the middle. Nothing fails, nothing leaks (Deno's sanitizers stay on). Each runs on
// both outbound legs (`-outbound-tls node` and `native`). The short form runs in
// `deno task test`; `deno task soak` runs the full figures.
import assert from "node:assert/strict";
import type net from "node:net";
import type { OutboundTls } from "../../src/outbound/listener.ts";
import { eventually, freePort, nth } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";
import { roundTrip, tcpClient } from "../e2e/_net.ts";

const SOAK = Deno.env.get("MESHGATE_SOAK") === "1";

/**
 * web → db through two sidecars (see tests/e2e/_mesh.ts), web's upstream on `leg`, named as this
 * suite uses them.
 */
async function pair(leg: OutboundTls) {
  const m = await mesh({ webLimits: { outboundTls: leg } });
  return Object.assign(m, { app: m.db, db: m.dbProxy, web: m.webProxy });
}

/** Open file descriptors of this process (sockets included); undefined without /proc. */
function openFds(): number | undefined {
  try {
    return [...Deno.readDirSync("/proc/self/fd")].length;
  } catch {
    return undefined;
  }
}

/** Runs `fn` for 0..n-1 with at most `width` at a time. */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) await fn(next++);
  }));
}

for (const leg of ["node", "native"] as const) {
  Deno.test(`load (${leg}): many concurrent connections with data flowing, then torn down — nothing leaks`, async () => {
    await using p = await pair(leg);
    const n = SOAK ? 2000 : 300;
    const rssBefore = Deno.memoryUsage().rss;
    const fdsBefore = openFds();
    const sockets: net.Socket[] = [];
    // In waves of 100: a burst of thousands of simultaneous connects overflows the echo app's
    // accept backlog, and the app then misses the 1 s local connect timeout (app_unreachable).
    for (let wave = 0; wave < n; wave += 100) {
      await pool(Math.min(100, n - wave), 50, async () => {
        sockets.push(await tcpClient(p.upstreamPort));
      });
      await eventually(
        () => p.db.inbound!.connections.size === sockets.length,
        30_000,
        `${sockets.length} open connections`,
      );
    }
    // Data flows on every one of them.
    const echoed = new Map<net.Socket, string>();
    for (const s of sockets) {
      echoed.set(s, "");
      s.on("data", (d) => echoed.set(s, echoed.get(s)! + d));
      s.on("error", () => {});
      s.write("ping;");
    }
    await eventually(() => [...echoed.values()].every((v) => v === "ping;"), 30_000, "every echo");
    const rssOpen = Deno.memoryUsage().rss;
    const fdsOpen = openFds();
    for (const s of sockets) s.destroy();
    await eventually(
      () =>
        p.db.inbound!.connections.size === 0 &&
        nth(p.web.upstreams, 0, "web's upstream").connections.size === 0,
      30_000,
      "every connection to be torn down",
    );
    await new Promise((r) => setTimeout(r, 500));
    const rssAfter = Deno.memoryUsage().rss;
    // A few descriptors close late (a TLS socket's last close, keep-alive agent connections).
    if (fdsBefore !== undefined) {
      await eventually(() => openFds()! - fdsBefore < n / 4, 5000).catch(() => {});
    }
    const fdsAfter = openFds();
    const perConn = (rssOpen - rssBefore) / n / 1024;
    console.log(
      `held (${leg}): ${n} concurrent connections echoed and torn down; resident memory ` +
        `+${((rssOpen - rssBefore) / 1048576).toFixed(0)} MiB while open ` +
        `(${
          perConn.toFixed(0)
        } KiB per connection, both proxies, app and clients in one process), ` +
        `+${((rssAfter - rssBefore) / 1048576).toFixed(0)} MiB after teardown`,
    );
    // Nothing leaks: every socket of every connection (client, both proxies' sides, the app's)
    // is closed again. Counted in file descriptors, not resident memory: RSS hardly shrinks after
    // a free (the allocator and V8 keep their pages), so it stays near its peak whether or not
    // anything leaked, and a bound relative to that peak cannot fail. Each connection holds
    // several descriptors while open; a single socket kept per connection leaves n behind.
    if (fdsBefore !== undefined && fdsOpen !== undefined && fdsAfter !== undefined) {
      console.log(`open descriptors: ${fdsBefore} before, ${fdsOpen} open, ${fdsAfter} after`);
      assert.ok(fdsOpen - fdsBefore >= n, `${n} connections hold ≥ ${n} descriptors while open`);
      assert.ok(
        fdsAfter - fdsBefore < n / 4,
        `${fdsAfter - fdsBefore} descriptors left open after tearing down ${n} connections`,
      );
    }
  });

  Deno.test(`load (${leg}): connection churn with an authorize call each — zero failed`, async () => {
    await using p = await pair(leg);
    const n = SOAK ? 20_000 : 1000;
    let failed = 0;
    const started = Date.now();
    await pool(n, 20, async (i) => {
      try {
        const got = new TextDecoder().decode(
          await roundTrip(await tcpClient(p.upstreamPort), `${i}`),
        );
        if (got !== `${i}`) failed++;
      } catch {
        failed++;
      }
    });
    const seconds = (Date.now() - started) / 1000;
    console.log(
      `held (${leg}): ${n} short connections, ${failed} failed, ${(n / seconds).toFixed(0)}/s`,
    );
    assert.equal(failed, 0);
    await eventually(() => p.db.inbound!.connections.size === 0, 10_000);
  });

  Deno.test(`load (${leg}): a CA rotation and a config change under load — no established connection fails`, async () => {
    await using p = await pair(leg);
    const held = SOAK ? 200 : 50;
    const sockets: { s: net.Socket; got: string; closed: boolean }[] = [];
    await pool(held, 25, async () => {
      const s = await tcpClient(p.upstreamPort);
      const entry = { s, got: "", closed: false };
      s.on("data", (d) => (entry.got += d));
      s.on("close", () => (entry.closed = true));
      s.on("error", () => {});
      sockets.push(entry);
    });
    let churnFailed = 0;
    let churned = 0;
    let stop = false;
    const churn = (async () => {
      while (!stop) {
        try {
          const got = new TextDecoder().decode(
            await roundTrip(await tcpClient(p.upstreamPort), "c"),
          );
          if (got !== "c") churnFailed++;
        } catch {
          churnFailed++;
        }
        churned++;
      }
    })();
    for (let round = 0; round < 3; round++) {
      for (const e of sockets) e.s.write(`${round};`);
      if (round === 1) {
        await p.dev.rotateCA();
        const extra = freePort();
        await p.agent.register(
          p.webRegistration([{ DestinationName: "cache", LocalBindPort: extra }]),
        );
        await eventually(() => p.web.upstreams.length === 2, 10_000, "the new upstream listener");
      }
      await eventually(
        () => sockets.every((e) => e.got.endsWith(`${round};`)),
        15_000,
        `round ${round} echoed on every held connection`,
      );
    }
    // Both sides move to leaves from the new root while new connections keep coming.
    const active = (await p.agent.roots()).value.Roots.find((r) => r.Active)!;
    await eventually(
      () =>
        p.db.material.leaf!.info.authorityKeyId === active.SigningKeyID &&
        p.web.material.leaf!.info.authorityKeyId === active.SigningKeyID,
      10_000,
      "leaves from the new root",
    );
    await new Promise((r) => setTimeout(r, SOAK ? 10_000 : 1000));
    stop = true;
    await churn;
    const failedHeld = sockets.filter((e) => e.closed).length;
    console.log(
      `held (${leg}): ${held} established connections through a rotation and a config change, ` +
        `${failedHeld} failed; ${churned} new connections meanwhile, ${churnFailed} failed`,
    );
    assert.equal(failedHeld, 0);
    assert.equal(churnFailed, 0);
    for (const e of sockets) e.s.destroy();
    await eventually(() => p.db.inbound!.connections.size === 0, 10_000);
  });
}
