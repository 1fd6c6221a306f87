/**
 * The small version of `deno task cluster` that CI runs: a real control plane
 * (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) over three
 * simulated nodes, `helm install` of chart/, discovery through the real
 * watch, RBAC enough and no more, a `helm upgrade` rollout without a dial
 * error, recovery from etcd compaction and an API server restart, and a
 * critical priority class refused where the API server limits it as GKE does.
 */

import { assert } from "../helpers/assert.ts";
import { requires } from "../helpers/requirements.ts";
import { RealCluster } from "../cluster/cluster.ts";
import { judge, markdown, runAll } from "../cluster/report.ts";

const NAME =
  "real control plane: helm install, discovery through the real watch, RBAC, a rollout without a dial error, recovery from compaction and an API server restart";
Deno.test({
  name: NAME,
  ignore: !requires(NAME, {
    root: true,
    commands: ["ip", "python3", "openssl", "helm", "go", "etcd", "etcdctl", "unshare"],
    devices: ["/dev/net/tun"],
  }),
  async fn() {
    await using cluster = await RealCluster.create({ nodes: 3 });
    const report = await runAll(cluster, {
      // Past the 30 s open deadline: a quiet watch must survive it without a counted failure.
      discoveryWindowMs: 45_000,
      cut: false,
      membership: false,
    });
    console.log(markdown(report));
    assert.deepEqual(judge(report), []);
  },
});
