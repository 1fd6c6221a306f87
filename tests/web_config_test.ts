/**
 * `--web.config.file`: the exporter-toolkit format, checked strictly; TLS and
 * basic authentication on a real exporter; health and readiness open to the
 * kubelet; users re-read when the file changes.
 */

import bcrypt from "bcryptjs";
import { loadWebConfig } from "../web/mod.ts";
import { makeCertificates } from "./helpers/api_server.ts";
import { caAndLeaf, CLIENT_EXTENSIONS } from "./helpers/pki.ts";
import { assert } from "./helpers/assert.ts";
import { runProgram, startWebExporter, waitFor } from "./helpers/exporter_process.ts";
import { requires } from "./helpers/requirements.ts";

async function writeConfig(dir: string, yaml: string): Promise<string> {
  const path = `${dir}/web.yml`;
  await Deno.writeTextFile(path, yaml);
  return path;
}

const HASH = bcrypt.hashSync("s3cret", 4);

/**
 * What each fixture in tests/fixtures/web_config must do: load, or be refused with a line matching
 * the pattern. Each fixture stands for the exporter-toolkit test case of the same name (its
 * web/testdata), with contents of our own; where the toolkit's "good" case asks for what Deno's TLS
 * cannot do, the refusal names it. Keys that only some toolkit branches had and its current Config
 * does not (client_fingerprints, client_cert_allowed_cn, client_cert_allowed_san_dns/_regex) are
 * refused as unknown, as the toolkit's own strict reading refuses them.
 */
const FIXTURES: Readonly<Record<string, "loads" | RegExp>> = {
  "tls_config_auth_user_list_invalid.bad.yml": /basic_auth_users/,
  "tls_config_noAuth.bad.yml": /neither tls_server_config\.key nor key_file/,
  "tls_config_noAuth.fingerprint.bad.yml": /unknown key tls_server_config\.client_fingerprints/,
  "tls_config_noAuth.fingerprint.good.yml": /unknown key tls_server_config\.client_fingerprints/,
  "tls_config_noAuth.fingerprint_empty.good.yml":
    /unknown key tls_server_config\.client_fingerprints/,
  "tls_config_noAuth.good.blocking.yml": "loads",
  "tls_config_noAuth.good.yml": "loads",
  "tls_config_noAuth.requireandverifyclientcert.authexcludedpaths.good.yml": "loads",
  "tls_config_noAuth.requireandverifyclientcert.good.yml": "loads",
  "tls_config_noAuth.requireanyclientcert.good.yml": "loads",
  "tls_config_noAuth.requireanyclientcertkeyinline.good.yml": "loads",
  "tls_config_noAuth_allCurves.good.yml": /curve_preferences, which Deno's TLS server/,
  "tls_config_noAuth_certPath_empty.bad.yml": /neither tls_server_config\.cert nor cert_file/,
  "tls_config_noAuth_certPath_invalid.bad.yml": /cert_file: no-such-dir\/server\.crt, which cannot/,
  "tls_config_noAuth_inventedCurves.bad.yml": /curve_preferences/,
  "tls_config_noAuth_keyPath_empty.bad.yml": /neither tls_server_config\.key nor key_file/,
  "tls_config_noAuth_noHTTP2.good.yml": "loads",
  "tls_config_noAuth_someCurves.good.yml": /curve_preferences, which Deno's TLS server/,
  "tls_config_noAuth_wrongTLSVersion.bad.yml": /tls_server_config\.min_version: TLS99/,
  "web_config.auth_client_common_name.good.yaml": /unknown key .*client_cert_allowed_cn/,
  "web_config_auth_clientCAsText_nocerts.bad.yml": /client CA with no PEM certificate/,
  "web_config_auth_clientCAs_invalid.bad.yml": /client_ca_file: no-such-ca\.pem, which cannot/,
  "web_config_auth_clientCAs_nocerts.bad.yml": /client CA with no PEM certificate/,
  "web_config_auth_client_common_name.bad.yaml": /unknown key .*client_cert_allowed_cn/,
  "web_config_auth_client_common_name.good.yaml": /unknown key .*client_cert_allowed_cn/,
  // Loads; the client is refused at the handshake (its SANs are not listed: tested below).
  "web_config_auth_client_san.authexcludedpaths.bad.yaml": "loads",
  "web_config_auth_client_san.bad.yaml": "loads",
  "web_config_auth_client_san.good.yaml": "loads",
  "web_config_auth_client_san_dns.bad.yaml": /unknown key .*client_cert_allowed_san_dns/,
  "web_config_auth_client_san_dns.good.yaml": /unknown key .*client_cert_allowed_san_dns/,
  "web_config_auth_client_san_dns_regex.bad.yaml": /unknown key .*client_cert_allowed_san_dns/,
  "web_config_auth_client_san_dns_regex.good.yaml": /unknown key .*client_cert_allowed_san_dns/,
  "web_config_auth_client_san_no_client_auth.bad.yaml":
    /client_allowed_sans with client_auth_type: NoClientCert/,
  "web_config_auth_client_san_optional_cert.bad.yaml":
    /client_allowed_sans with client_auth_type: VerifyClientCertIfGiven/,
  "web_config_auth_client_san_regex.bad.yaml": /unknown key .*client_cert_allowed_san_regex/,
  "web_config_auth_client_san_regex.good.yaml": /unknown key .*client_cert_allowed_san_regex/,
  "web_config_auth_excluded_paths.good.yml": "loads",
  "web_config_auth_user_list_invalid.bad.yml": /basic_auth_users/,
  "web_config_dscp_high.bad.yml": /ip_socket_config, which Deno cannot/,
  "web_config_dscp_neg.bad.yml": /ip_socket_config, which Deno cannot/,
  "web_config_headers.good.yml": "loads",
  "web_config_headers_content_type_options.bad.yml": /X-Content-Type-Options: sniff/,
  "web_config_headers_extra_header.bad.yml": /the header Set-Cookie/,
  "web_config_headers_frame_options.bad.yml": /X-Frame-Options: allowall/,
  "web_config_ip_socket.good.yml": /ip_socket_config, which Deno cannot/,
  "web_config_ipv4_ttl_high.bad.yml": /ip_socket_config, which Deno cannot/,
  "web_config_ipv4_ttl_zero.bad.yml": /ip_socket_config, which Deno cannot/,
  "web_config_junk_key.yml": /unknown key tls_server_config\.certfile/,
  "web_config_noAuth.bad.yml": /client CA without a client_auth_type/,
  "web_config_noAuth.good.blocking.yml": "loads",
  "web_config_noAuth.good.yml": "loads",
  "web_config_noAuth_allCiphers.good.yml": /cipher_suites, which Deno's TLS server/,
  "web_config_noAuth_allCurves.good.yml": /curve_preferences, which Deno's TLS server/,
  "web_config_noAuth_certPath_empty.bad.yml": /neither tls_server_config\.cert nor cert_file/,
  "web_config_noAuth_certPath_invalid.bad.yml": /cert_file: missing\.crt, which cannot be read/,
  "web_config_noAuth_certPath_keyPath_empty.bad.yml": /neither tls_server_config\.cert/,
  "web_config_noAuth_certPath_keyPath_invalid.bad.yml": /cert_file: missing\.crt, which cannot/,
  "web_config_noAuth_cert_empty.bad.yml": /neither tls_server_config\.cert nor cert_file/,
  "web_config_noAuth_inventedCiphers.bad.yml": /cipher_suites/,
  "web_config_noAuth_inventedCurves.bad.yml": /curve_preferences/,
  "web_config_noAuth_keyPath_empty.bad.yml": /neither tls_server_config\.key nor key_file/,
  "web_config_noAuth_keyPath_invalid.bad.yml": /key_file: missing\.key, which cannot be read/,
  "web_config_noAuth_key_empty.bad.yml": /neither tls_server_config\.key nor key_file/,
  "web_config_noAuth_noHTTP2.good.yml": "loads",
  "web_config_noAuth_noHTTP2Cipher.bad.yml": /cipher_suites/,
  "web_config_noAuth_someCiphers.good.yml": /cipher_suites, which Deno's TLS server/,
  "web_config_noAuth_someCiphers_noOrder.good.yml": /cipher_suites, which Deno's TLS server/,
  "web_config_noAuth_someCurves.good.yml": /curve_preferences, which Deno's TLS server/,
  "web_config_noAuth_tlsInline.good.yml": "loads",
  "web_config_noAuth_wrongTLSVersion.bad.yml": /max_version: TLS12/,
  "web_config_rate_limiter_headers.yaml": "loads",
  "web_config_rate_limiter_nonblocking.yaml": "loads",
  "web_config_rate_limiter_one_second.yaml": "loads",
  "web_config_tokens.good.yml": "loads",
  "web_config_tokens_noTLS.good.yml": "loads",
  "web_config_users.authexcludedpaths.good.yml": "loads",
  "web_config_users.good.yml": "loads",
  "web_config_users_noTLS.authexcludedpaths.good.yml": "loads",
  "web_config_users_noTLS.good.yml": "loads",
  "web_config_users_noTLS_excludePath.good.yml": "loads",
};

const FIXTURE_DIR = new URL("./fixtures/web_config/", import.meta.url).pathname;

/**
 * Copies the fixtures into `dir` beside the files they name (server.crt and .key, a client CA,
 * an empty file), with inline PEM and the bcrypt hash filled in.
 */
async function layFixtures(dir: string): Promise<void> {
  const server = await makeCertificates("127.0.0.1");
  await Deno.writeTextFile(`${dir}/server.crt`, server.cert);
  await Deno.writeTextFile(`${dir}/server.key`, server.key);
  await Deno.writeTextFile(`${dir}/client_ca.pem`, server.caPem);
  await Deno.writeTextFile(`${dir}/empty.pem`, "");
  const indent = (pem: string) => pem.trimEnd().split("\n").map((line) => `    ${line}`).join("\n");
  for await (const entry of Deno.readDir(FIXTURE_DIR)) {
    const text = (await Deno.readTextFile(`${FIXTURE_DIR}${entry.name}`))
      .replaceAll("{{INLINE_CERT}}", indent(server.cert))
      .replaceAll("{{INLINE_KEY}}", indent(server.key))
      .replaceAll("{{HASH}}", HASH);
    await Deno.writeTextFile(`${dir}/${entry.name}`, text);
  }
}

const FIXTURE_TEST = "web config: a fixture for every exporter-toolkit test case";
Deno.test({
  name: `${FIXTURE_TEST} loads or is refused by name, as the toolkit's own case says`,
  ignore: !requires(FIXTURE_TEST, { commands: ["openssl"] }),
  async fn() {
    const names = [...Deno.readDirSync(FIXTURE_DIR)].map((entry) => entry.name).sort();
    assert.deepEqual(names, Object.keys(FIXTURES).sort(), "one expectation per fixture");
    const dir = await Deno.makeTempDir({ prefix: "web-config-fixtures-" });
    try {
      await layFixtures(dir);
      for (const [name, expected] of Object.entries(FIXTURES)) {
        const loading = loadWebConfig(`${dir}/${name}`);
        if (expected === "loads") {
          await loading.catch((error) => assert.fail(`${name}: ${error.message}`));
        } else {
          const error = await loading.then(() => undefined, (error: Error) => error);
          assert.ok(error, `${name} is refused`);
          assert.match(error!.message, expected, name);
          assert.match(error!.message, /^Cannot use web config: current file "[^"]+" /, name);
          assert.ok(!error!.message.includes("\n"), `${name}: one line`);
        }
      }
      // What the loaded ones mean.
      const load = (name: string) => loadWebConfig(`${dir}/${name}`);
      const tokens = await load("web_config_tokens_noTLS.good.yml");
      assert.deepEqual(tokens.tokens, ["a-token-of-our-own", "another-token"]);
      assert.equal(tokens.tls, undefined);
      assert.deepEqual((await load("web_config_auth_excluded_paths.good.yml")).excludedPaths, [
        "/metrics",
      ]);
      assert.equal((await load("web_config_users.good.yml")).excludedPaths, undefined);
      assert.deepEqual((await load("web_config_rate_limiter_headers.yaml")).rateLimit, {
        intervalMs: 1_000,
        burst: 2,
      });
      assert.equal((await load("web_config_rate_limiter_nonblocking.yaml")).rateLimit, undefined);
      const inline = await load("web_config_noAuth_tlsInline.good.yml");
      assert.equal(inline.tls?.clientAuth, "VerifyClientCertIfGiven");
      assert.match(inline.tls?.cert ?? "", /BEGIN CERTIFICATE/);
      assert.deepEqual((await load("web_config_auth_client_san.good.yaml")).tls?.allowedSans, [
        "someone.example",
        "prometheus.example",
      ]);
      assert.deepEqual(
        (await load("web_config_headers.good.yml")).headers["X-Frame-Options"],
        "deny",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const START = "web config: start-up refuses what cannot work";
Deno.test({
  name:
    `${START}: a key that does not match, a bad file, metrics on a health path; one line, exit 2`,
  ignore: !requires(START, { commands: ["openssl"] }),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "web-config-start-" });
    try {
      const server = await makeCertificates("127.0.0.1");
      const other = await makeCertificates("127.0.0.1");
      await Deno.writeTextFile(`${dir}/tls.crt`, server.cert);
      await Deno.writeTextFile(`${dir}/other.key`, other.key);
      for (const clientAuth of ["NoClientCert", "RequireAnyClientCert"]) {
        const path = await writeConfig(
          dir,
          `tls_server_config:\n  cert_file: tls.crt\n  key_file: other.key\n  client_auth_type: ${clientAuth}\n`,
        );
        const mismatched = await runProgram([`--web.config.file=${path}`]);
        assert.equal(mismatched.code, 2, clientAuth);
        assert.equal(mismatched.stderr.trimEnd().split("\n").length, 1, mismatched.stderr);
        assert.match(mismatched.stderr, /key that does not match its certificate/);
      }
      const bad = await runProgram([`--web.config.file=${await writeConfig(dir, "bogus: 1\n")}`]);
      assert.equal(bad.code, 2);
      assert.equal(bad.stderr.trimEnd().split("\n").length, 1, bad.stderr);
      assert.match(bad.stderr, /unknown key bogus/);
      for (const path of ["/healthz", "/readyz", "/"]) {
        const open = await runProgram([`--web.telemetry-path=${path}`]);
        assert.equal(open.code, 2, path);
        assert.match(open.stderr, /Cannot serve metrics at/);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
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
      await using exporter = await startWebExporter(path);
      const url = exporter.https;
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
        await using exporter = await startWebExporter(path);
        const url = exporter.https + "/metrics";
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
