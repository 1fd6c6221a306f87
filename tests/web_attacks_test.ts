/**
 * The front door tried as an outsider would, against a real exporter: TLS
 * connections that never start a handshake under a low descriptor limit,
 * silent connections while client certificates are required, a burst of
 * password guesses, a web config emptied while running, and the bundle with
 * TLS and users under exactly the compiled permissions. Figures (latencies,
 * medians) are measured by `deno task bench:front-door` into
 * docs/hardening.md; these tests assert behaviour.
 */

import bcrypt from "bcryptjs";
import { makeCertificates } from "./helpers/api_server.ts";
import { assert } from "./helpers/assert.ts";
import { bundleProgram, inMountNamespace } from "./helpers/bundle.ts";
import {
  START_FLAGS,
  startExporter,
  startWebExporter,
  waitFor,
} from "./helpers/exporter_process.ts";
import { Exposition } from "./helpers/metrics.ts";
import { caAndLeaf, CLIENT_EXTENSIONS } from "./helpers/pki.ts";
import { requires } from "./helpers/requirements.ts";
import { startListener } from "./helpers/tcp.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Writes a certificate and key and a web config naming them (plus `extra`) in a new folder. */
async function tlsConfig(extra = ""): Promise<{ dir: string; path: string; caPem: string }> {
  const dir = await Deno.makeTempDir({ prefix: "web-attacks-" });
  const { caPem, cert, key } = await makeCertificates("127.0.0.1");
  await Deno.writeTextFile(`${dir}/tls.crt`, cert);
  await Deno.writeTextFile(`${dir}/tls.key`, key);
  const path = `${dir}/web.yml`;
  await Deno.writeTextFile(
    path,
    `tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n${extra}`,
  );
  return { dir, path, caPem };
}

/** Descriptors the process holds now (read by ls: Deno lets only --allow-all read /proc/<pid>). */
function descriptors(pid: number): number {
  const output = new Deno.Command("ls", { args: [`/proc/${pid}/fd`], stdout: "piped" })
    .outputSync();
  return new TextDecoder().decode(output.stdout).trim().split("\n").length;
}

/** Opens `count` TCP connections to `port` that send nothing. */
function silentConnections(port: number, count: number): Promise<Deno.Conn[]> {
  return Promise.all(
    Array.from({ length: count }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
}

function closeAll(conns: Deno.Conn[]): void {
  for (const conn of conns) {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
}

async function dialErrors(url: string, client: Deno.HttpClient): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { client })).text();
  return new Exposition(text).samples("network_dial_error_total")
    .reduce((sum, sample) => sum + sample.value, 0);
}

const SILENT_TLS = "web attacks: 260 connections that never start a TLS handshake";
Deno.test({
  name: `${SILENT_TLS}, at a 200-descriptor limit, cost no dial and hold no descriptor`,
  ignore: !requires(SILENT_TLS, { commands: ["prlimit", "openssl"] }),
  async fn() {
    const { dir, path, caPem } = await tlsConfig();
    const client = Deno.createHttpClient({ caCerts: [caPem] });
    await using target = startListener();
    try {
      await using exporter = await startExporter(
        [
          "--no-collector.dns",
          `--network.targets=${target.address}`,
          "--network.interval=200ms",
          "--network.timeout=100ms",
          "--network.concurrency=8",
          `--web.config.file=${path}`,
        ],
        {
          command: ["prlimit", "--nofile=200:200", Deno.execPath(), "run", ...START_FLAGS, MAIN],
        },
      );
      const url = exporter.url.replace(/^http:/, "https:");
      const pid = exporter.child.pid;
      await waitFor(
        async () => {
          const response = await fetch(`${url}/readyz`, { client });
          await response.body?.cancel();
          return response.status === 200;
        },
        10_000,
        "ready",
      );
      const before = descriptors(pid);
      const silent = await silentConnections(Number(new URL(url).port), 260);
      try {
        // Past the 5 s head deadline, and a few probe rounds.
        await new Promise((resolve) => setTimeout(resolve, 6_500));
        const held = descriptors(pid);
        assert.ok(held <= before + 8, `${held} descriptors held, ${before} before`);
        assert.equal(await dialErrors(url, client), 0, "no probe lacked a descriptor");
      } finally {
        closeAll(silent);
      }
    } finally {
      client.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const MTLS = "web attacks: 140 silent connections while client certificates are required";
Deno.test({
  name: `${MTLS} do not keep a good client out`,
  ignore: !requires(MTLS, { commands: ["openssl"] }),
  async fn() {
    const trusted = await caAndLeaf(
      "clients-ca",
      "/CN=prometheus",
      `${CLIENT_EXTENSIONS}subjectAltName=DNS:prometheus.example\n`,
    );
    const { dir, path, caPem } = await tlsConfig(
      "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n" +
        "  client_allowed_sans:\n    - prometheus.example\n",
    );
    await Deno.writeTextFile(`${dir}/clients.crt`, trusted.caPem);
    const good = Deno.createHttpClient({ caCerts: [caPem], cert: trusted.cert, key: trusted.key });
    try {
      await using exporter = await startWebExporter(path);
      const url = exporter.https;
      const silent = await silentConnections(Number(new URL(url).port), 140);
      try {
        for (let i = 0; i < 3; i++) {
          const response = await fetch(`${url}/metrics`, { client: good });
          await response.body?.cancel();
          assert.equal(response.status, 200);
        }
      } finally {
        closeAll(silent);
      }
    } finally {
      good.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const GUESSES = "web attacks: password guesses";
Deno.test({
  name: `${GUESSES} are checked off the main thread, one at a time, and refused alike`,
  ignore: !requires(GUESSES, { commands: ["openssl"] }),
  async fn() {
    // Cost 12: a few hundred milliseconds of bcrypt each, seconds for the burst below.
    const hash = bcrypt.hashSync("right", 12);
    const { dir, path, caPem } = await tlsConfig(`basic_auth_users:\n  alice: ${hash}\n`);
    const client = Deno.createHttpClient({ caCerts: [caPem] });
    try {
      await using exporter = await startWebExporter(path);
      const url = exporter.https;
      const get = async (user?: string, password?: string, at = "/metrics") => {
        const headers = user ? { authorization: `Basic ${btoa(`${user}:${password}`)}` } : {};
        const response = await fetch(`${url}${at}`, { client, headers });
        await response.body?.cancel();
        return response.status;
      };
      assert.equal(await get("alice", "right"), 200);
      const order: string[] = [];
      const guesses = Array.from(
        { length: 8 },
        (_, i) =>
          get(i % 2 ? "alice" : "mallory", `guess-${i}`).then((status) => {
            order.push("guess");
            return status;
          }),
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      // The main thread answers while the worker still has guesses in line.
      const health = await get(undefined, undefined, "/healthz");
      order.push("health");
      const scrape = await get("alice", "right");
      order.push("scrape");
      const statuses = await Promise.all(guesses);
      assert.equal(health, 200);
      assert.equal(scrape, 200, "a remembered password costs no bcrypt run");
      assert.ok(order.indexOf("scrape") < order.lastIndexOf("guess"), order.join(" "));
      assert.ok(statuses.every((status) => status === 401), statuses.join(","));
      // The same wrong password again is remembered: refused without a bcrypt run.
      const again = await Promise.all([get("alice", "guess-1"), get("mallory", "guess-0")]);
      assert.deepEqual(again, [401, 401]);
    } finally {
      client.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const RELOAD = "web attacks: a web config emptied or broken while running";
Deno.test({
  name: `${RELOAD} keeps the last good one, closed, with one warning each`,
  ignore: !requires(RELOAD, { commands: ["openssl"] }),
  async fn() {
    const hash = bcrypt.hashSync("right", 4);
    const { dir, path, caPem } = await tlsConfig(`basic_auth_users:\n  alice: ${hash}\n`);
    const client = Deno.createHttpClient({ caCerts: [caPem] });
    try {
      await using exporter = await startWebExporter(path);
      const url = exporter.https;
      const unauthenticated = async () => {
        const response = await fetch(`${url}/metrics`, { client });
        await response.body?.cancel();
        return response.status;
      };
      const good = await Deno.readTextFile(path);
      for (
        const [content, why] of [
          ["", /is empty/],
          ["{}\n", /would turn authentication off/],
          ["basic_auth_users:\n  alice: nonsense\n", /not a bcrypt hash/],
          [good.replace(/tls_server_config:[^]*?(?=basic_auth_users)/, ""), /would turn TLS off/],
        ] as const
      ) {
        await Deno.writeTextFile(path, content);
        // Reloads are looked for at most once a second; two requests a second apart see it.
        await new Promise((resolve) => setTimeout(resolve, 1_100));
        assert.equal(await unauthenticated(), 401, JSON.stringify(content));
        await new Promise((resolve) => setTimeout(resolve, 1_100));
        assert.equal(await unauthenticated(), 401, JSON.stringify(content));
        const warnings = exporter.logs.filter((line) => why.test(line));
        assert.equal(warnings.length, 1, `one warning for ${JSON.stringify(content)}`);
      }
    } finally {
      client.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const BUNDLE = "web attacks: the bundle under the compiled permissions";
Deno.test({
  name: `${BUNDLE} serves TLS and checks passwords on its own worker`,
  ignore: !requires(BUNDLE, { root: true, commands: ["unshare", "mount", "openssl"] }),
  async fn() {
    const hash = bcrypt.hashSync("right", 4);
    const { dir, caPem } = await tlsConfig(`basic_auth_users:\n  alice: ${hash}\n`);
    const client = Deno.createHttpClient({ caCerts: [caPem] });
    // A mount point for the namespace's tmpfs; made here (and removed after) only if the machine
    // has none.
    const mountPoint = "/etc/net-exporter";
    const made = await Deno.mkdir(mountPoint).then(() => true, () => false);
    try {
      const bundle = await bundleProgram(`${dir}/net-exporter.js`);
      // /etc/net-exporter, the one folder the compiled binary may read its config from, is a
      // tmpfs of the test's own mount namespace.
      const inPod = "mount -t tmpfs tmpfs /etc/net-exporter && " +
        'cp "$CONFIG"/tls.* "$CONFIG"/web.yml /etc/net-exporter/';
      await using exporter = await startExporter(
        [
          "--no-collector.dns",
          "--network.targets=127.0.0.1:9",
          "--k8s.discovery=off",
          "--web.config.file=/etc/net-exporter/web.yml",
        ],
        {
          command: inMountNamespace(inPod, bundle),
          env: { CONFIG: dir },
        },
      );
      const url = exporter.url.replace(/^http:/, "https:");
      const get = async (password: string) => {
        const response = await fetch(`${url}/metrics`, {
          client,
          headers: { authorization: `Basic ${btoa(`alice:${password}`)}` },
        });
        await response.body?.cancel();
        return response.status;
      };
      assert.equal(await get("right"), 200);
      assert.equal(await get("wrong"), 401);
    } finally {
      if (made) await Deno.remove(mountPoint);
      client.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
