/**
 * The compiled binary and its image, as far as these machines can check them:
 * no Docker engine runs here and `deno compile` cannot download its runtime,
 * so the program is bundled (as `deno compile --bundle` embeds it) and run
 * under exactly the compile task's permissions, and the Dockerfile is checked
 * against the compile task and the module graph.
 */

import { startApiServer } from "./helpers/api_server.ts";
import { assert } from "./helpers/assert.ts";
import {
  bundleProgram,
  COMPILE_TASK,
  COMPILED_RUN_FLAGS,
  inMountNamespace,
} from "./helpers/bundle.ts";
import { startDnsServer } from "./helpers/dns_server.ts";
import { get, startExporter, waitFor, waitUntilReady } from "./helpers/exporter_process.ts";
import { Exposition } from "./helpers/metrics.ts";
import { CHILD_ENV, requires } from "./helpers/requirements.ts";
import { LIBC_PATHS } from "../lib/libc.ts";
import denoJson from "../deno.json" with { type: "json" };
import { closedPort, startListener } from "./helpers/tcp.ts";
import { startNtpServer } from "./helpers/ntp_server.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("compile task: permissions are scoped, never --allow-all", () => {
  const flags = COMPILED_RUN_FLAGS;
  assert.ok(!/(^| )(-A|--allow-all)( |$)/.test(COMPILE_TASK));
  assert.deepEqual(flags.map((flag) => flag.split("=")[0]).sort(), [
    "--allow-env",
    "--allow-ffi",
    "--allow-net",
    "--allow-read",
    "--no-code-cache",
    "--unstable-net",
    "--v8-flags",
  ]);
  const read = flags.find((flag) => flag.startsWith("--allow-read="))!.slice("--allow-read=".length)
    .split(",");
  assert.deepEqual(read, [
    "/var/run/secrets/kubernetes.io/serviceaccount",
    "/run/secrets/kubernetes.io/serviceaccount",
    "/proc/self/limits",
    "/etc/net-exporter",
  ]);
  // FFI for glibc alone, at the paths lib/libc.ts opens (kernel-timed handshakes).
  const ffi = flags.find((flag) => flag.startsWith("--allow-ffi="))!.slice("--allow-ffi=".length)
    .split(",");
  assert.deepEqual(ffi, LIBC_PATHS);
  const startTask = (denoJson.tasks as Record<string, string>).start!;
  assert.ok(startTask.includes(`--allow-ffi=${LIBC_PATHS.join(",")}`), "deno task start too");
  const env = flags.find((flag) => flag.startsWith("--allow-env="))!.slice("--allow-env=".length)
    .split(",");
  assert.ok(
    env.every((name) => /^[A-Z_]+\*?$/.test(name)),
    "named variables (and the NET_EXPORTER_ prefix)",
  );
  assert.ok(
    COMPILE_TASK.includes("--bundle"),
    "bundled: avoids bintrees' test data and embeds less",
  );
  assert.match(COMPILE_TASK, /DENORT_BIN/, "says what to do when the runtime cannot be downloaded");
});

Deno.test("Dockerfile: stages, paths and flags match the compile task and the module graph", async () => {
  const dockerfile = await Deno.readTextFile(`${ROOT}/Dockerfile`);
  const lines = dockerfile.split("\n").filter((line) =>
    line.trim() !== "" && !line.startsWith("#")
  );
  const froms = lines.filter((line) => line.startsWith("FROM "));
  assert.deepEqual(froms, [
    "FROM denoland/deno:2.9.6 AS build",
    "FROM gcr.io/distroless/cc-debian12:nonroot",
  ]);
  assert.ok(lines.includes("RUN deno install --frozen"));
  assert.ok(lines.includes("RUN deno task compile"), "one source of truth for the compile flags");
  assert.ok(!/--allow-/.test(dockerfile), "no permission flags of its own");
  const output = /--output (\S+)/.exec(COMPILE_TASK)![1]!;
  const workdir = /^WORKDIR (\S+)$/m.exec(dockerfile)![1]!;
  assert.ok(lines.includes(`COPY --from=build ${workdir}/${output} /net-exporter`));
  const final = lines.slice(lines.indexOf(froms[1]!));
  assert.ok(final.includes("USER nonroot"));
  assert.ok(final.includes("ENV DENO_USE_CGROUPS=1"));
  assert.ok(final.includes('ENTRYPOINT ["/net-exporter"]'));
  assert.equal(final.filter((line) => line.startsWith("COPY")).length, 1, "only the binary");

  // Every local module main.ts reaches is copied into the build stage and not dockerignored.
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${ROOT}/main.ts`],
    env: CHILD_ENV,
    stdout: "piped",
  }).output();
  const modules = JSON.parse(new TextDecoder().decode(info.stdout)).modules as Array<
    { specifier: string }
  >;
  const local = modules.map((module) => module.specifier).filter((specifier) =>
    specifier.startsWith("file://")
  )
    .map((specifier) => new URL(specifier).pathname.slice(ROOT.length));
  const topLevel = [
    ...new Set(local.map((path) => path.includes("/") ? `${path.split("/")[0]}/` : path)),
  ].sort();
  const copied = lines.filter((line) => line.startsWith("COPY ") && !line.includes("--from"))
    .flatMap((line) => line.split(" ").slice(1, -1));
  const ignore = (await Deno.readTextFile(`${ROOT}/.dockerignore`)).split("\n");
  for (const path of topLevel) {
    assert.ok(copied.includes(path), `${path} is copied into the build stage`);
    assert.ok(ignore.includes(`!${path}`), `${path} is not dockerignored`);
  }
});

const BUNDLE =
  "bundle: runs under exactly the compiled permissions — DNS, static target, in-cluster discovery";
Deno.test({
  name: BUNDLE,
  ignore: !requires(BUNDLE, { root: true, commands: ["unshare", "mount", "openssl"] }),
  async fn() {
    const work = await Deno.makeTempDir({ prefix: "bundle-" });
    try {
      const bundle = await bundleProgram(`${work}/net-exporter.js`);

      await using dns = await startDnsServer();
      await using target = startListener();
      await using peer = startListener("127.0.0.12");
      await using ntp = startNtpServer({ offsetMs: 80 });
      await using api = await startApiServer();
      api.apply({ name: "net-exporter-a", node: "node-a", ips: ["127.0.0.11"] });
      api.apply({ name: "net-exporter-b", node: "node-b", ips: ["127.0.0.12"] });
      const secrets = `${work}/serviceaccount`;
      await Deno.mkdir(secrets);
      await Deno.writeTextFile(`${secrets}/token`, api.token);
      await Deno.writeTextFile(`${secrets}/ca.crt`, api.caPem);
      await Deno.writeTextFile(`${secrets}/namespace`, "monitoring");

      // A mount namespace of the test's own, with the service-account files where a pod has them.
      const inPod = 'mount -t tmpfs tmpfs /run && mkdir -p "$SA" && cp "$SECRETS"/* "$SA"/';
      const closedTargets = Array.from({ length: 100 }, () => `127.0.0.1:${closedPort()}`);
      await using exporter = await startExporter(
        [
          `--dns.servers=${dns.address}`,
          "--dns.hosts=ok.test.",
          "--dns.interval=1s",
          "--dns.timeout=500ms",
          // 100 closed ports: refusals read from errno through libc under these permissions.
          `--network.targets=${[target.address, ...closedTargets].join(",")}`,
          `--network.port=${peer.port}`,
          "--network.interval=1s",
          "--network.timeout=500ms",
          `--ntp.servers=${ntp.address}`,
          "--ntp.interval=1s",
          "--ntp.timeout=500ms",
        ],
        {
          command: inMountNamespace(inPod, bundle),
          env: {
            SA: "/var/run/secrets/kubernetes.io/serviceaccount",
            SECRETS: secrets,
            KUBERNETES_SERVICE_HOST: "127.0.0.1",
            KUBERNETES_SERVICE_PORT: new URL(api.url).port,
            POD_NAME: "net-exporter-a",
            NODE_NAME: "node-a",
            POD_IP: "127.0.0.11",
          },
        },
      );
      await waitUntilReady(exporter, 10_000);
      await waitFor(
        async () => {
          const metrics = new Exposition((await get(`${exporter.url}/metrics`)).body);
          return metrics.samples("network_latency_seconds_count", { target_node: "node-b" })
            .length === 1;
        },
        5_000,
        "the discovered peer probed",
      );
      const metrics = new Exposition((await get(`${exporter.url}/metrics`)).body);
      assert.ok(metrics.histogram("dns_latency_seconds", { host: "ok.test." }).count >= 1);
      assert.ok(metrics.histogram("network_latency_seconds", { host: target.address }).count >= 1);
      assert.equal(metrics.value("net_exporter_peers", { state: "selected" }), 1);
      assert.ok(exporter.logs.some((line) => line.includes("handshakes timed by the kernel")));
      assert.equal(metrics.value("network_handshake_clock_info", { clock: "kernel" }), 1);
      assert.equal(metrics.value("network_syn_retransmits_total", { host: target.address }), 0);
      assert.ok(metrics.value("network_path_mtu_bytes", { host: target.address }) > 0);
      const refused = metrics.samples("network_dial_error_total", { reason: "refused" })
        .filter((sample) => sample.value > 0).length;
      assert.ok(refused >= 90, `closed ports seen refused through the kernel dialer: ${refused}`);
      assert.equal(metrics.value("network_error_total"), 0);
      assert.equal(metrics.value("dns_error_total"), 0);
      assert.ok(metrics.histogram("ntp_latency_seconds", { server: ntp.address }).count >= 1);
      assert.ok(
        Math.abs(metrics.value("ntp_offset_seconds", { server: ntp.address }) - 0.08) < 0.01,
      );
      assert.ok(metrics.value("process_resident_memory_bytes") > 0);
      const denied = exporter.logs.filter((line) => /NotCapable|Requires .* access/.test(line));
      assert.deepEqual(denied, [], "no permission outside the compiled set was needed");
      const { code } = await exporter.stop();
      assert.equal(code, 0);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});
