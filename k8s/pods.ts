/**
 * The little the exporter keeps of a pod: enough to decide whether it is a
 * peer and where to dial it. Whole pod objects (managedFields alone are
 * kilobytes) are dropped as soon as they are read.
 * @module
 */

/** A pod as the cache keeps it. */
export interface PodRecord {
  readonly name: string;
  readonly uid: string;
  readonly node: string;
  /** Every pod IP (`status.podIPs`), so dual-stack pods are probed in both families. */
  readonly ips: readonly string[];
  readonly running: boolean;
  readonly ready: boolean;
  readonly deleting: boolean;
}

/** The fields of a pod object that are read; everything else is ignored. */
export interface PodObject {
  metadata?: { name?: string; uid?: string; deletionTimestamp?: string | null };
  spec?: { nodeName?: string };
  status?: {
    phase?: string;
    podIP?: string;
    podIPs?: Array<{ ip?: string }>;
    conditions?: Array<{ type?: string; status?: string }>;
  };
}

/** Reduces a pod object to a {@link PodRecord}; `undefined` when it has no name or uid. */
export function toPodRecord(pod: PodObject): PodRecord | undefined {
  const name = pod.metadata?.name;
  const uid = pod.metadata?.uid;
  if (!name || !uid) return undefined;
  const ips = new Set<string>();
  for (const entry of pod.status?.podIPs ?? []) if (entry.ip) ips.add(entry.ip);
  if (pod.status?.podIP) ips.add(pod.status.podIP);
  return {
    name,
    uid,
    node: pod.spec?.nodeName ?? "",
    ips: [...ips],
    running: pod.status?.phase === "Running",
    ready: (pod.status?.conditions ?? []).some((condition) =>
      condition.type === "Ready" && condition.status === "True"
    ),
    deleting: Boolean(pod.metadata?.deletionTimestamp),
  };
}

/** A peer is running, has an IP and a node, is Ready, and is not being deleted. */
export function isPeer(pod: PodRecord): boolean {
  return pod.running && pod.ips.length > 0 && pod.node !== "" && pod.ready && !pod.deleting;
}
