/**
 * The status page in a real headless Chromium (Debian's, driven by
 * playwright-core): it renders, escapes hostile names, shows a failing
 * target in red with its reason, and updates without a reload when a target
 * comes up. Run as a program (`deno task screenshot`), the same scene is
 * drawn into docs/status-page.png.
 */

import { chromium } from "playwright-core";
import { startApiServer } from "./helpers/api_server.ts";
import { assert } from "./helpers/assert.ts";
import { startDnsServer } from "./helpers/dns_server.ts";
import { startExporter, waitFor, waitUntilReady } from "./helpers/exporter_process.ts";
import { requires } from "./helpers/requirements.ts";
import { closedPort, startListener } from "./helpers/tcp.ts";

const CHROMIUM = "/usr/bin/chromium";
/** The flags Chromium needs here: no sandbox as root, and no calls home from a closed network. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const HOSTILE_NODE = `<img src=x onerror="window.pwned=1">`;

/**
 * A few healthy and failing targets and a discovered peer on a node with a
 * hostile name; `check` looks at the page in Chromium, `screenshot` is where
 * the picture goes.
 */
async function scene(
  screenshot: string,
  check: (page: import("playwright-core").Page, turnUp: () => void) => Promise<void>,
): Promise<void> {
  await using dns = await startDnsServer({
    behaviour: (name) => name.startsWith("nx.") ? { rcode: "NXDOMAIN" } : { a: ["10.0.0.1"] },
  });
  await using healthy = startListener();
  const laterPort = closedPort();
  const refused = `127.0.0.1:${closedPort()}`;
  await using peer = startListener("127.0.0.12");
  await using api = await startApiServer();
  api.apply({ name: "net-exporter-a", node: "node-a", ips: ["127.0.0.11"] });
  api.apply({ name: "net-exporter-b", node: HOSTILE_NODE, ips: ["127.0.0.12"] });
  await using exporter = await startExporter(
    [
      `--dns.servers=${dns.address}`,
      "--dns.hosts=kubernetes.default.svc.cluster.local.,nx.example.",
      "--dns.interval=1s",
      "--dns.timeout=500ms",
      `--network.targets=${healthy.address},${refused},127.0.0.1:${laterPort}`,
      "--network.interval=1s",
      "--network.timeout=500ms",
      `--network.port=${peer.port}`,
      `--k8s.kubeconfig=${await api.writeKubeconfig("monitoring")}`,
    ],
    { env: { POD_NAME: "net-exporter-a", NODE_NAME: "node-a", POD_IP: "127.0.0.11" } },
  );
  await waitUntilReady(exporter, 20_000);
  // A few probes of history for the sparklines.
  await new Promise((resolve) => setTimeout(resolve, 4_000));
  let later: AsyncDisposable | undefined;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(exporter.url);
    await check(page, () => (later = startListener("127.0.0.1", laterPort)));
    await page.screenshot({ path: screenshot, fullPage: true });
  } finally {
    await browser.close();
    await later?.[Symbol.asyncDispose]();
  }
}

const NAME = "status page: in Chromium";
Deno.test({
  name:
    `${NAME}, it escapes hostile names, shows failures in red with their reason, updates itself`,
  ignore: !requires(NAME, { commands: ["chromium", "openssl"] }),
  sanitizeResources: false, // playwright's pipes to the browser close after the test's end
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "status-page-" });
    try {
      await scene(`${dir}/page.png`, async (page, turnUp) => {
        // Hostile names are text, never markup.
        assert.equal(await page.evaluate(() => (window as { pwned?: number }).pwned), undefined);
        assert.ok((await page.textContent("body"))!.includes(HOSTILE_NODE));
        // A failing target: red, with its reason, and a sparkline.
        const refusedRow = page.locator("tr.down", { hasText: "refused" }).first();
        assert.ok(await refusedRow.isVisible());
        const color = await refusedRow.evaluate((row) =>
          // Runs in the page, where the DOM's getComputedStyle exists.
          (globalThis as unknown as {
            getComputedStyle(element: unknown): { backgroundColor: string };
          }).getComputedStyle(row).backgroundColor
        );
        assert.equal(color, "rgb(253, 232, 232)");
        assert.ok(await page.locator("tr.down", { hasText: "nxdomain" }).first().isVisible());
        assert.ok((await page.locator("svg.spark").count()) >= 5);
        // A target comes up: the page shows it without a reload.
        await page.evaluate(() => ((window as { marker?: number }).marker = 1));
        const downBefore = await page.locator("tr.down").count();
        turnUp();
        await waitFor(
          async () => (await page.locator("tr.down").count()) === downBefore - 1,
          20_000,
          "the page shows the target up",
        );
        assert.equal(await page.evaluate(() => (window as { marker?: number }).marker), 1);
      });
      const png = await Deno.readFile(`${dir}/page.png`);
      assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      assert.ok(png.length > 10_000, `${png.length} bytes`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

if (import.meta.main) {
  const out = new URL("../docs/status-page.png", import.meta.url).pathname;
  await scene(out, async () => {});
  console.log(`wrote ${out}`);
}
