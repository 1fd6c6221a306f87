/**
 * `--web.config.file`: the exporter-toolkit format, checked strictly; TLS and
 * basic authentication on a real exporter; health and readiness open to the
 * kubelet; users re-read when the file changes.
 */

import bcrypt from "bcryptjs";
import { loadWebConfig } from "../lib/web_config.ts";
import { makeCertificates } from "./helpers/api_server.ts";
import { caAndLeaf, CLIENT_EXTENSIONS } from "./helpers/pki.ts";
import { assert } from "./helpers/assert.ts";
import { runProgram, startExporter, waitFor } from "./helpers/exporter_process.ts";
import { requires } from "./helpers/requirements.ts";

async function writeConfig(dir: string, yaml: string): Promise<string> {
  const path = `${dir}/web.yml`;
  await Deno.writeTextFile(path, yaml);
  return path;
}

const HASH = bcrypt.hashSync("s3cret", 4);

Deno.test("web config: unknown keys, unusable client certificate settings, bad hashes and other headers are refused by name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "web-config-" });
  try {
    const refused: Array<[string, RegExp]> = [
      ["bogus: 1\n", /unknown key bogus/],
      [
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  bogus: 1\n",
        /tls_server_config\.bogus/,
      ],
      [
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
        /without tls_server_config\.client_ca_file/,
      ],
      [
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
        /client_auth_type: Sometimes; expected one of NoClientCert/,
      ],
      [
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
        /client_ca_file, which client_auth_type: NoClientCert never uses/,
      ],
      ["tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n", /TLS13/],
      ["tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n", /cannot be read/],
      ["basic_auth_users:\n  alice: plaintext\n", /alice something that is not a bcrypt hash/],
      ["http_server_config:\n  headers:\n    Set-Cookie: x\n", /header Set-Cookie/],
    ];
    for (const [yaml, message] of refused) {
      await assert.rejects(() => writeConfig(dir, yaml).then(loadWebConfig), message, yaml);
    }
    const config = await loadWebConfig(
      await writeConfig(
        dir,
        `basic_auth_users:\n  alice: ${HASH}\nhttp_server_config:\n  headers:\n    x-frame-options: deny\n`,
      ),
    );
    assert.equal(config.tls, undefined);
    assert.deepEqual(config.headers, { "X-Frame-Options": "deny" });
    assert.equal(config.users.get("alice"), HASH);
    // The real program: one line, exit 2, nothing started.
    const bad = await runProgram([`--web.config.file=${await writeConfig(dir, "bogus: 1\n")}`]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.trimEnd().split("\n").length, 1, bad.stderr);
    assert.match(bad.stderr, /unknown key bogus/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const TLS = "web config: TLS and basic authentication on a real exporter";
Deno.test({
  name: `${TLS}; health and readiness open; plain HTTP refused; users re-read`,
  ignore: !requires(TLS, { commands: ["openssl"] }),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "web-config-" });
    const { caPem, cert, key } = await makeCertificates("127.0.0.1");
    await Deno.writeTextFile(`${dir}/tls.crt`, cert);
    await Deno.writeTextFile(`${dir}/tls.key`, key);
    const yaml = (users: string) =>
      `tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n` +
      `http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n` +
      `basic_auth_users:\n${users}`;
    const path = await writeConfig(dir, yaml(`  alice: ${HASH}\n`));
    const client = Deno.createHttpClient({ caCerts: [caPem] });
    try {
      await using exporter = await startExporter([
        "--no-collector.dns",
        "--network.targets=127.0.0.1:9",
        `--web.config.file=${path}`,
      ]);
      const url = exporter.url.replace(/^http:/, "https:");
      const get = async (path: string, user?: string, password?: string) => {
        const headers = user ? { authorization: `Basic ${btoa(`${user}:${password}`)}` } : {};
        const response = await fetch(`${url}${path}`, { client, headers });
        await response.body?.cancel();
        return response;
      };
      const ok = await get("/metrics", "alice", "s3cret");
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get("strict-transport-security"), "max-age=31536000");
      assert.equal((await get("/metrics", "alice", "wrong")).status, 401);
      assert.equal((await get("/metrics")).status, 401);
      assert.match((await get("/")).headers.get("www-authenticate") ?? "", /^Basic realm=/);
      assert.equal((await get("/healthz")).status, 200, "the kubelet needs no credentials");
      // Plain HTTP to the TLS port gets no answer.
      await assert.rejects(() => fetch(exporter.url + "/metrics").then((r) => r.text()));
      // A user added to the file counts without a restart.
      await Deno.writeTextFile(path, yaml(`  alice: ${HASH}\n  bob: ${HASH}\n`));
      await waitFor(
        async () => (await get("/metrics", "bob", "s3cret")).status === 200,
        5_000,
        "bob accepted after the file changed",
      );
    } finally {
      client.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A CA and a client certificate it signs (clientAuth). */
function clientCertificate(name: string): Promise<{ caPem: string; cert: string; key: string }> {
  return caAndLeaf(`${name}-ca`, `/CN=${name}`, CLIENT_EXTENSIONS);
}

const MTLS = "web config: client certificates as client_auth_type asks";
Deno.test({
  name: `${MTLS}, on a real exporter: a trusted one passes, none or an untrusted one does not`,
  ignore: !requires(MTLS, { commands: ["openssl"] }),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "web-config-mtls-" });
    const server = await makeCertificates("127.0.0.1");
    const trusted = await clientCertificate("prometheus");
    const stranger = await clientCertificate("stranger");
    await Deno.writeTextFile(`${dir}/tls.crt`, server.cert);
    await Deno.writeTextFile(`${dir}/tls.key`, server.key);
    await Deno.writeTextFile(`${dir}/clients.crt`, trusted.caPem);
    const clients = {
      trusted: Deno.createHttpClient({
        caCerts: [server.caPem],
        cert: trusted.cert,
        key: trusted.key,
      }),
      stranger: Deno.createHttpClient({
        caCerts: [server.caPem],
        cert: stranger.cert,
        key: stranger.key,
      }),
      none: Deno.createHttpClient({ caCerts: [server.caPem] }),
    };
    // What each policy lets through, per Go's tls.ClientAuthType.
    const policies: Array<[string, Record<keyof typeof clients, boolean>]> = [
      ["RequireAndVerifyClientCert", { trusted: true, stranger: false, none: false }],
      ["VerifyClientCertIfGiven", { trusted: true, stranger: false, none: true }],
      ["RequireAnyClientCert", { trusted: true, stranger: true, none: false }],
      ["RequestClientCert", { trusted: true, stranger: true, none: true }],
    ];
    try {
      for (const [policy, expected] of policies) {
        const ca = policy.includes("Verify") ? "  client_ca_file: clients.crt\n" : "";
        const path = await writeConfig(
          dir,
          `tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: ${policy}\n${ca}`,
        );
        await using exporter = await startExporter([
          "--no-collector.dns",
          "--network.targets=127.0.0.1:9",
          `--web.config.file=${path}`,
        ]);
        const url = exporter.url.replace(/^http:/, "https:") + "/metrics";
        for (
          const [name, client] of Object.entries(clients) as Array<
            [keyof typeof clients, Deno.HttpClient]
          >
        ) {
          const status = await fetch(url, { client }).then(async (response) => {
            await response.body?.cancel();
            return response.status;
          }).catch(() => "refused");
          assert.equal(status, expected[name] ? 200 : "refused", `${policy}, ${name} client`);
        }
        // The kubelet's probes carry no certificate: under a policy that requires one they cannot pass,
        // which is why the chart probes the port over TCP then (webConfig.clientCertificates).
        assert.ok(exporter.logs.some((line) => line.includes("(https)")), "listening over https");
      }
    } finally {
      for (const client of Object.values(clients)) client.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
