/** The neighbour ring's four properties, checked on many cluster sizes. */

import { probersOf, ring, selectNeighbours } from "../k8s/neighbours.ts";
import { peerEndpoints, selectPeers } from "../k8s/discovery.ts";
import { isPeer, type PodRecord, toPodRecord } from "../k8s/pods.ts";
import { assert } from "./helpers/assert.ts";

function graph(nodes: string[], k: number): Map<string, string[]> {
  return new Map(nodes.map((node) => [node, selectNeighbours(node, nodes, k)]));
}

function pairs(edges: Map<string, string[]>): Set<string> {
  return new Set([...edges].flatMap(([from, tos]) => tos.map((to) => `${from}->${to}`)));
}

const nodeNames = (n: number, prefix = "node") =>
  Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

for (
  const [n, k] of [
    [1, 10],
    [2, 10],
    [3, 10],
    [3, 1],
    [50, 10],
    [50, 3],
    [50, 0],
    [200, 10],
    [7, 6],
    [7, 7],
  ]
) {
  Deno.test(`neighbours: ${n} nodes, max ${k} peers: out-degree, in-degree, never self`, () => {
    const nodes = nodeNames(n!);
    const edges = graph(nodes, k!);
    const expected = k === 0 ? n! - 1 : Math.min(k!, n! - 1);
    const inDegree = new Map(nodes.map((node) => [node, 0]));
    for (const [from, tos] of edges) {
      assert.equal(tos.length, expected, `${from} probes ${tos.length}`);
      assert.equal(new Set(tos).size, tos.length, "no duplicates");
      assert.ok(!tos.includes(from), `${from} never probes itself`);
      for (const to of tos) inDegree.set(to, inDegree.get(to)! + 1);
    }
    for (const [node, count] of inDegree) {
      assert.equal(count, expected, `${node} probed by ${count}`);
    }
  });
}

Deno.test("neighbours: adding or removing one node changes O(K) probe pairs, not O(N)", () => {
  for (const [n, k] of [[50, 10], [200, 10], [500, 3]]) {
    const nodes = nodeNames(n!);
    const before = pairs(graph(nodes, k!));
    for (const change of ["add", "remove"]) {
      const after = pairs(graph(change === "add" ? [...nodes, "node-new"] : nodes.slice(1), k!));
      const changed = [...before].filter((pair) => !after.has(pair)).length +
        [...after].filter((pair) => !before.has(pair)).length;
      // The node's own K out-edges and K in-edges, plus the K edges they displace: at most 4K.
      assert.ok(changed <= 4 * k!, `${change} on ${n} nodes changed ${changed} pairs (K=${k})`);
      assert.ok(changed >= k!, "the change is visible");
    }
  }
});

Deno.test("neighbours: every instance computes the same ring, whatever the input order", () => {
  const nodes = nodeNames(30);
  const shuffled = [...nodes].reverse();
  assert.deepEqual(ring(nodes), ring(shuffled));
  assert.deepEqual(selectNeighbours("node-3", nodes, 5), selectNeighbours("node-3", shuffled, 5));
  // Similar names are spread apart, not neighbours by spelling.
  assert.notDeepEqual(selectNeighbours("node-3", nodes, 2), ["node-4", "node-5"]);
});

function pod(name: string, node: string, ips: string[], extra: Partial<PodRecord> = {}): PodRecord {
  return {
    name,
    uid: `uid-${name}`,
    node,
    ips,
    running: true,
    ready: true,
    deleting: false,
    ...extra,
  };
}

Deno.test("peers: never this pod (by name or IP), never its node, not ready/deleting/pending ones", () => {
  const pods = [
    pod("self", "node-a", ["10.0.0.1"]),
    pod("restarted-self", "node-a", ["10.0.0.9"]),
    pod("b", "node-b", ["10.0.0.2", "fd00::2"]),
    pod("c", "node-c", ["10.0.0.3"], { ready: false }),
    pod("d", "node-d", ["10.0.0.4"], { deleting: true }),
    pod("e", "node-e", [], { running: false }),
    pod("f", "node-f", ["10.0.0.6"]),
    pod("ip-twin", "node-g", ["10.0.0.1"]),
  ];
  const selection = selectPeers(pods, { podName: "self", podIPs: ["10.0.0.1"], node: "node-a" }, 0);
  assert.deepEqual(selection.discovered.map((peer) => peer.name), ["b", "f", "restarted-self"]);
  assert.deepEqual(selection.selected.map((peer) => peer.name).sort(), ["b", "f"]);
  assert.deepEqual(
    peerEndpoints(selection.selected, 8000).map((endpoint) =>
      `${endpoint.hostname}@${endpoint.node}`
    ).sort(),
    [
      "10.0.0.2@node-b",
      "10.0.0.6@node-f",
      "fd00::2@node-b",
    ],
  );
});

Deno.test("peers: a cluster of two probes the other node, never itself", () => {
  const pods = [pod("a", "node-a", ["10.0.0.1"]), pod("b", "node-b", ["10.0.0.2"])];
  for (const [self, other] of [["a", "b"], ["b", "a"]]) {
    const selection = selectPeers(pods, { podName: self, podIPs: [], node: `node-${self}` }, 10);
    assert.deepEqual(selection.selected.map((peer) => peer.name), [other]);
  }
});

Deno.test("pods: a pod object shrinks to what probing needs", () => {
  const record = toPodRecord({
    metadata: { name: "p", uid: "u", deletionTimestamp: null },
    spec: { nodeName: "n" },
    status: {
      phase: "Running",
      podIP: "10.0.0.1",
      podIPs: [{ ip: "10.0.0.1" }, { ip: "fd00::1" }],
      conditions: [{ type: "Ready", status: "True" }],
    },
  });
  assert.deepEqual(record, {
    name: "p",
    uid: "u",
    node: "n",
    ips: ["10.0.0.1", "fd00::1"],
    running: true,
    ready: true,
    deleting: false,
  });
  assert.ok(isPeer(record!));
  assert.equal(toPodRecord({ metadata: { name: "no-uid" } }), undefined);
});

Deno.test("pods: only unicast IP literals are dialled, canonical and one per family", () => {
  const ipsOf = (podIPs: string[], podIP?: string) =>
    toPodRecord({
      metadata: { name: "p", uid: "u" },
      status: { podIPs: podIPs.map((ip) => ({ ip })), ...(podIP ? { podIP } : {}) },
    })!.ips;
  assert.deepEqual(
    ipsOf([
      "0.0.0.0",
      "::",
      "999.1.1.1",
      "evil.example",
      "224.0.0.1",
      "255.255.255.255",
      "ff02::1",
    ]),
    [],
  );
  assert.deepEqual(ipsOf(["::FFFF:10.0.0.7"]), ["10.0.0.7"]);
  assert.deepEqual(ipsOf(["::ffff:a00:8"]), ["10.0.0.8"]);
  assert.deepEqual(ipsOf(["FD00:0:0:0:0:0:0:9"]), ["fd00::9"]);
  assert.deepEqual(ipsOf(["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"], "10.0.0.3"), [
    "10.0.0.1",
    "fd00::1",
  ]);
  // Thousands of listed addresses make at most one target per family.
  const many = Array.from({ length: 5000 }, (_, i) => `10.1.${i >> 8 & 255}.${i & 255}`);
  assert.deepEqual(ipsOf(many), ["10.1.0.0"]);
});

Deno.test("peers: this pod in IPv4-mapped form is still this pod; loopback only beside a loopback pod", () => {
  const pods = [
    pod("self", "node-a", ["10.0.0.1"]),
    {
      ...pod("mapped-self", "node-b", []),
      ips: toPodRecord({
        metadata: { name: "m", uid: "m" },
        status: { podIPs: [{ ip: "::ffff:10.0.0.1" }] },
      })!.ips,
    },
    pod("local", "node-c", ["127.0.0.1"]),
    pod("b", "node-d", ["10.0.0.2"]),
  ];
  const selection = selectPeers(pods, { podName: "self", podIPs: ["10.0.0.1"], node: "node-a" }, 0);
  assert.deepEqual(
    peerEndpoints(selection.selected, 8000).map((endpoint) => endpoint.hostname),
    ["10.0.0.2"],
  );
  // Several exporters on one machine, as in tests: loopback peers are peers.
  const onOneHost = selectPeers(
    [pod("x", "node-x", ["127.0.0.2"]), pod("y", "node-y", ["127.0.0.3"])],
    { podName: "x", podIPs: ["127.0.0.2"], node: "node-x" },
    0,
  );
  assert.deepEqual(onOneHost.selected.map((peer) => peer.name), ["y"]);
});

Deno.test("neighbours: the nodes that probe a node are exactly those whose ring neighbours include it", () => {
  for (
    const [count, maxPeers] of [[1, 10], [2, 10], [7, 3], [50, 10], [50, 0], [200, 5]] as const
  ) {
    const nodes = Array.from({ length: count }, (_, index) => `node-${index}`);
    for (const self of nodes.slice(0, 10)) {
      const others = nodes.filter((node) => node !== self);
      const probers = probersOf(self, others, maxPeers);
      const expected = others.filter((node) =>
        selectNeighbours(node, nodes.filter((other) => other !== node), maxPeers).includes(self)
      );
      assert.deepEqual([...probers].sort(), expected.sort(), `${count} nodes, K=${maxPeers}`);
    }
  }
});
