/**
 * Kubeconfigs of the shapes real clusters hand out, read through the schema:
 * inline and file CA data, tokens inline and in files, client certificates,
 * several contexts, extensions; what cannot be used is refused by name.
 */

import { loadClusterConfig } from "../k8s/client.ts";
import { assert } from "./helpers/assert.ts";

const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const b64 = (text: string) => btoa(text);
const noEnv = () => undefined;

async function withKubeconfig(
  yaml: string,
  files: Record<string, string>,
  check: (path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kubeconfig-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    await Deno.writeTextFile(`${dir}/config`, yaml);
    await check(`${dir}/config`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("kubeconfig: several contexts, inline CA, a token, extensions and preferences", async () => {
  const yaml = `apiVersion: v1
kind: Config
preferences: {}
current-context: prod
clusters:
- name: dev
  cluster:
    server: https://dev.example:6443
- name: prod
  cluster:
    server: https://10.0.0.1:443
    certificate-authority-data: ${b64(CA)}
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: x}
users:
- name: prod-reader
  user:
    token: s3cret
contexts:
- name: dev
  context: {cluster: dev, user: prod-reader}
- name: prod
  context:
    cluster: prod
    user: prod-reader
    namespace: monitoring
`;
  await withKubeconfig(yaml, {}, async (path) => {
    const config = (await loadClusterConfig(path, noEnv))!;
    assert.equal(config.server, "https://10.0.0.1:443");
    assert.equal(config.caPem, CA);
    assert.equal(await config.token(), "s3cret");
    assert.equal(config.namespace, "monitoring");
    assert.equal(config.clientCert, undefined);
  });
});

Deno.test("kubeconfig: CA and token in files beside it, a token file re-read as it rotates", async () => {
  const yaml = `clusters:
- name: c
  cluster: {server: "https://api.example", certificate-authority: ca.crt}
users:
- name: u
  user: {tokenFile: token}
contexts:
- name: only
  context: {cluster: c, user: u}
`;
  await withKubeconfig(yaml, { "ca.crt": CA, token: "first\n" }, async (path) => {
    const config = (await loadClusterConfig(path, noEnv))!;
    assert.equal(config.caPem, CA);
    assert.equal(await config.token(), "first");
    await Deno.writeTextFile(path.replace(/config$/, "token"), "second\n");
    assert.equal(await config.token(), "second");
    assert.equal(config.namespace, undefined);
  });
});

Deno.test("kubeconfig: a client certificate, inline or in files", async () => {
  const yaml = (user: string) =>
    `clusters:
- name: c
  cluster: {server: "https://api.example"}
users:
- name: u
  user: ${user}
contexts:
- name: x
  context: {cluster: c, user: u}
`;
  await withKubeconfig(
    yaml(`{client-certificate-data: ${b64("CERT")}, client-key-data: ${b64("KEY")}}`),
    {},
    async (path) => {
      assert.deepEqual((await loadClusterConfig(path, noEnv))!.clientCert, {
        cert: "CERT",
        key: "KEY",
      });
    },
  );
  await withKubeconfig(
    yaml("{client-certificate: tls.crt, client-key: tls.key}"),
    { "tls.crt": "CERT", "tls.key": "KEY" },
    async (path) => {
      const config = (await loadClusterConfig(path, noEnv))!;
      assert.deepEqual(config.clientCert, { cert: "CERT", key: "KEY" });
      assert.equal(await config.token(), undefined);
    },
  );
});

Deno.test("kubeconfig: what cannot be used is refused by name", async () => {
  const cases: Array<[string, RegExp]> = [
    [
      `clusters: [{name: c, cluster: {server: "https://a"}}]
users: [{name: u, user: {exec: {command: gke-gcloud-auth-plugin, apiVersion: client.authentication.k8s.io/v1beta1}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]`,
      /exec, auth-provider and basic credentials are not supported/,
    ],
    [
      `clusters: [{name: c, cluster: {server: "https://a"}}]
users: [{name: u, user: {auth-provider: {name: oidc}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]`,
      /exec, auth-provider/,
    ],
    [
      `clusters: [{name: c, cluster: {server: "https://a", insecure-skip-tls-verify: true}}]
contexts: [{name: x, context: {cluster: c}}]`,
      /insecure-skip-tls-verify is not supported/,
    ],
    [
      `clusters: [{name: c, cluster: {server: "not a url"}}]
contexts: [{name: x, context: {cluster: c}}]`,
      /clusters\.0\.cluster\.server is not a URL/,
    ],
    [`clusters: [{name: c, cluster: {server: "https://a"}}]`, /no context/],
    [`contexts: [{name: x, context: {cluster: gone}}]`, /names no known cluster/],
    [`clusters: {c: {server: "https://a"}}`, /clusters/],
    [`- just a list`, /not a mapping/],
  ];
  for (const [yaml, why] of cases) {
    await withKubeconfig(yaml, {}, async (path) => {
      await assert.rejects(() => loadClusterConfig(path, noEnv), why, yaml);
    });
  }
});
