// The dashboard in a real browser: Debian's chromium, driven headless by playwright-core.
// `.ci/run` installs chromium; without it this test says loudly that it skips.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startAdmin } from "../../src/admin/server.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import { eventually } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";
import { tcpClient } from "../e2e/_net.ts";

const CHROMIUM = Deno.env.get("MESHGATE_CHROMIUM") ?? "/usr/bin/chromium";
const hasChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
if (!hasChromium) {
  console.warn(
    `\n*** dashboard_browser_test.ts: SKIPPED — no browser at ${CHROMIUM} ` +
      "(apt-get install chromium, or set MESHGATE_CHROMIUM) ***\n",
  );
}

Deno.test({
  name: "dashboard: a real browser shows the identity, a live connection and a denial",
  ignore: !hasChromium,
  sanitizeResources: false, // the browser is a child process with pipes
  sanitizeOps: false,
  async fn() {
    await using m = await mesh();
    await using webAdmin = await startAdmin({ proxy: m.webProxy, port: 0, tickMs: 200 });
    await using dbAdmin = await startAdmin({ proxy: m.dbProxy, port: 0, tickMs: 200 });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    const shots = await Deno.makeTempDir({ prefix: "meshgate-dashboard-" });
    try {
      const page = await browser.newPage();
      await page.goto(webAdmin.url);
      await page.getByTestId("service").filter({ hasText: "web" }).waitFor();
      assert.match(await page.getByTestId("spiffe").innerText(), /\/svc\/web$/);
      await page.getByTestId("phase").filter({ hasText: "ready" }).waitFor();
      assert.match(await page.getByTestId("leaf-expiry").innerText(), /\d+h \d+m \d+s/);
      await page.getByTestId("upstreams").filter({ hasText: "db.default.default.dc1" }).waitFor();

      // A connection opened now appears without a reload.
      const c = await tcpClient(m.upstreamPort);
      c.write("hello");
      await page.getByTestId("conn-out").filter({ hasText: /^1$/ }).waitFor();
      await page.getByTestId("connections").filter({ hasText: /db@127\.0\.0\.1/ }).waitFor();
      await page.screenshot({ path: `${shots}/web.png`, fullPage: true });
      c.destroy();
      await page.getByTestId("conn-out").filter({ hasText: /^0$/ }).waitFor();

      // A denied caller shows up on db's dashboard with its reason.
      const dbPage = await browser.newPage();
      await dbPage.goto(dbAdmin.url);
      await dbPage.getByTestId("phase").filter({ hasText: "ready" }).waitFor();
      await new OperatorClient(m.agent).upsertIntention("web", "db", { Action: "deny" });
      const d = await tcpClient(m.upstreamPort);
      d.on("error", () => {});
      d.write("let me in");
      await eventually(() => m.events.some((e) => e.type === "refused"));
      await dbPage.getByTestId("denials").filter({ hasText: /denied — spiffe:\/\/.*\/svc\/web/ })
        .waitFor();
      await dbPage.screenshot({ path: `${shots}/db.png`, fullPage: true });
      d.destroy();
      assert.ok((await Deno.stat(`${shots}/web.png`)).size > 10_000);
      console.log(`dashboard screenshots: ${shots}`);
    } finally {
      await browser.close();
    }
  },
});
