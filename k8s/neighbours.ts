/**
 * Which nodes a node probes. Every instance computes the same graph from the
 * same node names: the nodes sit on a ring ordered by a hash of their name,
 * and each node probes the next K nodes on the ring. So every node probes
 * min(K, N−1) others, is probed by min(K, N−1) others, never itself, and one
 * node joining or leaving changes O(K) probe pairs. Keyed on node names, pod
 * restarts (new names, new IPs) do not reshuffle it.
 * @module
 */

/**
 * FNV-1a over the name's UTF-8 bytes, then MurmurHash3's 32-bit finaliser:
 * stable across processes and versions, and names that differ in one
 * character (node-3, node-4) land far apart on the ring.
 */
export function nodeHash(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/** The ring: node names ordered by hash, ties broken by name. */
export function ring(nodes: Iterable<string>): string[] {
  return [...new Set(nodes)]
    .map((name) => ({ name, hash: nodeHash(name) }))
    .sort((a, b) => a.hash - b.hash || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((entry) => entry.name);
}

/**
 * The nodes `self` probes among `nodes` (which may or may not include it):
 * the next `maxPeers` on the ring after `self`, or every other node when
 * `maxPeers` is 0.
 */
export function selectNeighbours(
  self: string,
  nodes: Iterable<string>,
  maxPeers: number,
): string[] {
  const ordered = ring([self, ...nodes]);
  const others = ordered.length - 1;
  const count = maxPeers === 0 ? others : Math.min(maxPeers, others);
  const at = ordered.indexOf(self);
  return Array.from({ length: count }, (_, step) => ordered[(at + 1 + step) % ordered.length]!);
}

/**
 * The nodes among `nodes` that probe `self`: those with `self` among their
 * next `maxPeers` on the ring, i.e. the `maxPeers` before it (0: every node).
 */
export function probersOf(self: string, nodes: Iterable<string>, maxPeers: number): Set<string> {
  const ordered = ring([self, ...nodes]);
  const others = ordered.length - 1;
  const count = maxPeers === 0 ? others : Math.min(maxPeers, others);
  const at = ordered.indexOf(self);
  const probers = new Set<string>();
  for (let step = 1; step <= count; step++) {
    probers.add(ordered[(at - step + ordered.length) % ordered.length]!);
  }
  return probers;
}
