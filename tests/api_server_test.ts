/**
 * The stand-in API server answers what in-cluster exporters ask besides the
 * pod watch net-exporter uses: field selectors, services, EndpointSlices,
 * per-client tokens.
 */

import { assert } from "./helpers/assert.ts";
import { startApiServer } from "./helpers/api_server.ts";
import { requires } from "./helpers/requirements.ts";

const NAME = "stand-in API server: field selectors, services, EndpointSlices, tokens per client";
Deno.test({
  name: NAME,
  ignore: !requires(NAME, { commands: ["openssl"] }),
  async fn() {
    await using api = await startApiServer();
    const client = Deno.createHttpClient({ caCerts: [api.caPem] });
    const token = api.issueToken("plugin");
    const get = async (path: string, bearer = token) => {
      const response = await fetch(`${api.url}${path}`, {
        client,
        headers: { authorization: `Bearer ${bearer}` },
      });
      return { status: response.status, body: await response.json() };
    };
    try {
      api.apply({ name: "a", node: "node-a", ips: ["10.0.0.1"] });
      api.apply({ name: "b", node: "node-b", ips: ["10.0.0.2"], ready: false });
      api.apply({ name: "c", node: "node-c", ips: ["10.0.0.3"], deleting: true });
      api.apply({ name: "other", node: "node-a", ips: ["10.0.0.9"], labels: { app: "x" } });
      api.applyService({
        namespace: "kube-system",
        name: "kube-dns",
        clusterIP: "10.96.0.10",
        ports: [{ name: "dns", port: 53, protocol: "UDP" }],
      });
      api.applyService({
        namespace: "monitoring",
        name: "net-exporter",
        clusterIP: "None",
        ports: [{ name: "metrics", port: 8000 }],
        selector: { "app.kubernetes.io/name": "net-exporter" },
      });

      const byIp = await get(
        "/api/v1/namespaces/monitoring/pods?fieldSelector=status.podIP%3D10.0.0.2",
      );
      assert.deepEqual(
        byIp.body.items.map((pod: { metadata: { name: string } }) => pod.metadata.name),
        ["b"],
      );
      const notOnA = await get("/api/v1/pods?fieldSelector=spec.nodeName!%3Dnode-a");
      assert.deepEqual(
        notOnA.body.items.map((pod: { metadata: { name: string } }) => pod.metadata.name),
        ["b", "c"],
      );
      assert.equal(
        (await get("/api/v1/namespaces/monitoring/pods/a")).body.status.podIP,
        "10.0.0.1",
      );
      assert.equal((await get("/api/v1/namespaces/monitoring/pods/zzz")).status, 404);

      const dns = await get("/api/v1/namespaces/kube-system/services/kube-dns");
      assert.equal(dns.body.spec.clusterIP, "10.96.0.10");
      assert.equal(dns.body.spec.ports[0].port, 53);
      assert.equal((await get("/api/v1/services")).body.items.length, 2);
      assert.equal((await get("/api/v1/namespaces/default/services")).body.items.length, 0);

      const slices = await get(
        "/apis/discovery.k8s.io/v1/namespaces/monitoring/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dnet-exporter",
      );
      assert.equal(slices.body.kind, "EndpointSliceList");
      const endpoints = slices.body.items[0].endpoints as Array<
        { addresses: string[]; conditions: Record<string, boolean>; nodeName: string }
      >;
      assert.deepEqual(endpoints.map((endpoint) => [endpoint.addresses[0], endpoint.conditions]), [
        ["10.0.0.1", { ready: true, serving: true, terminating: false }],
        ["10.0.0.2", { ready: false, serving: false, terminating: false }],
        ["10.0.0.3", { ready: false, serving: true, terminating: true }],
      ]);
      assert.equal(
        (await get(
          "/apis/discovery.k8s.io/v1/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dnone",
        ))
          .body.items.length,
        0,
      );
      assert.equal((await get("/api/v1/services?watch=1")).status, 405);
      assert.equal((await get("/api/v1/endpointslices")).status, 404);
      assert.equal((await get("/api/v1/pods", "wrong")).status, 401);
      assert.equal(api.requestsBy("plugin"), 11); // every request above but the one with a wrong token
      assert.equal(api.requestsBy("default"), 0);
    } finally {
      client.close();
    }
  },
});
