/**
 * The little the exporter keeps of a pod: enough to decide whether it is a
 * peer and where to dial it. Whole pod objects (managedFields alone are
 * kilobytes) are dropped as soon as they are read.
 * @module
 */

import { isIP } from "../lib/ip.ts";

/** A pod as the cache keeps it. */
export interface PodRecord {
  readonly name: string;
  readonly uid: string;
  readonly node: string;
  /**
   * The pod's dialable IPs (`status.podIPs`, else `status.podIP`), canonical,
   * at most one per family, so dual-stack pods are probed in both families.
   */
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
  // The API server is trusted with names, not with what gets dialled: only the
  // first valid unicast address of each family, however many are listed.
  const byFamily = new Map<4 | 6, string>();
  const listed = [...(pod.status?.podIPs ?? []).map((entry) => entry.ip), pod.status?.podIP];
  for (const text of listed.slice(0, MAX_LISTED_IPS)) {
    const ip = typeof text === "string" ? unicastAddress(text) : undefined;
    if (ip === undefined) continue;
    const family = isIP(ip) as 4 | 6;
    if (!byFamily.has(family)) byFamily.set(family, ip);
  }
  return {
    name,
    uid,
    node: pod.spec?.nodeName ?? "",
    ips: [...byFamily.values()],
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

/** How many listed addresses of one pod are looked at; Kubernetes sets at most one per family. */
const MAX_LISTED_IPS = 4;

/**
 * The canonical form of an IP literal (IPv4-mapped IPv6 as IPv4, IPv6
 * compressed and in lower case), or `undefined` when `text` is not an IP
 * literal or not a unicast address a peer can have: the unspecified address,
 * multicast and broadcast are refused. Loopback is kept; whether it may be
 * dialled depends on who asks ({@link isLoopback}).
 */
export function unicastAddress(text: string): string | undefined {
  const family = isIP(text);
  if (family === 0) return undefined;
  if (family === 6) {
    const canonical = new URL(`http://[${text}]/`).hostname.slice(1, -1);
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
    if (mapped) {
      const [high, low] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
      return unicastAddress(`${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`);
    }
    if (canonical === "::" || canonical.startsWith("ff")) return undefined;
    return canonical;
  }
  const octets = text.split(".").map(Number);
  if (octets[0] === 0 || octets[0]! >= 224) return undefined; // this network, multicast, reserved, broadcast
  return octets.join(".");
}

/** True for 127.0.0.0/8 and ::1. */
export function isLoopback(ip: string): boolean {
  return ip === "::1" || ip.startsWith("127.");
}
