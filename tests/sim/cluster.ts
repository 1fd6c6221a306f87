/**
 * A cluster on one machine: N network namespaces as nodes, each with a TUN
 * device in 198.18.0.0/15 (the range reserved for network benchmarks), joined
 * by the userspace link emulator (linkemu.py) that delays and drops packets
 * per link. The run's own control point — a TUN device "nesim…" in the root
 * namespace — hosts the stand-in API server and the DNS server and scrapes
 * the exporters. Each run takes a /21 of its own in that range (one of 64
 * slots, held by a lock file for the run's life), so two runs on one machine
 * never share an address or a route. Every namespace, device and process is
 * removed by `dispose`, also after a failure.
 * @module
 */

import { startApiServer, type TestApiServer } from "../helpers/api_server.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns_server.ts";
import {
  type ExporterProcess,
  START_FLAGS,
  startExporter,
  waitUntilReady,
} from "../helpers/exporter_process.ts";
import { CHILD_ENV } from "../helpers/requirements.ts";

/** How many /21 slots 198.18.0.0/15 holds: runs on one machine at once. */
const SLOTS = 64;
/** Where the slot locks live; a lock is released when its process ends, however it ends. */
const SLOT_LOCKS = "/tmp/net-exporter-sim-slot";

/**
 * An address of slot `slot`: its /21 holds eight /24s, `block` (0–7) picks
 * one: 0 nodes, 1 the control point, 2–3 restarted pods, 4–7 the crowd.
 */
function slotAddress(slot: number, block: number, host: number): string {
  const third = slot * 8 + block; // 0–511 across 198.18.0.0–198.19.255.255
  return `198.${18 + (third >> 8)}.${third & 255}.${host}`;
}

/** Takes the first free slot; its lock is held until `release` (or the process ends). */
async function takeSlot(): Promise<{ slot: number; release(): void }> {
  for (let slot = 0; slot < SLOTS; slot++) {
    const file = await Deno.open(`${SLOT_LOCKS}-${slot}.lock`, { create: true, write: true });
    if (await file.tryLock(true)) {
      return { slot, release: () => file.close() };
    }
    file.close();
  }
  throw new Error(`Cannot build a simulated cluster: all ${SLOTS} address slots are in use`);
}
/** The port every exporter listens on, as in a DaemonSet. */
export const EXPORTER_PORT = 8000;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const LINKEMU = new URL("./linkemu.py", import.meta.url).pathname;
const REFERENCE = new URL("./reference.py", import.meta.url).pathname;

/** One simulated node. */
export interface SimNode {
  readonly index: number;
  readonly name: string;
  readonly netns: string;
  /** The current pod's IP (a restarted pod gets a new one). */
  address: string;
  exporter: ExporterProcess | undefined;
  podName: string;
}

/** Per-link impairment, one way. */
export interface LinkSettings {
  delay_ms?: number;
  jitter_ms?: number;
  loss?: number;
  /** Drops only TCP SYNs (without ACK) on the link: its source can open no connection over it. */
  syn_loss?: number;
  /** Drops every packet longer than this many bytes (IP header included), silently: an MTU black hole. */
  max_size?: number;
}

/** The labels of the simulated DaemonSet's pods, as the chart's release "net-exporter" sets them. */
export const POD_LABELS: Readonly<Record<string, string>> = {
  "app.kubernetes.io/name": "net-exporter",
  "app.kubernetes.io/instance": "net-exporter",
};

async function run(command: string, ...args: string[]): Promise<string> {
  const output = await new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "piped",
    env: CHILD_ENV,
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`${command} ${args.join(" ")} failed: ${stderr}`);
  return new TextDecoder().decode(output.stdout);
}

async function tryRun(command: string, ...args: string[]): Promise<void> {
  await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output().catch(
    () => {},
  );
}

/**
 * False only when no process with this PID exists. Asked of the kernel through
 * `kill -0`: Deno grants `/proc/<pid>` only with every permission, and a check
 * that cannot tell must not let another run's namespaces be removed, so any
 * doubt answers true.
 */
async function alive(pid: number): Promise<boolean> {
  if (!Number.isInteger(pid) || pid <= 0) return true;
  const output = await new Deno.Command("sh", {
    args: ["-c", `kill -0 ${pid} 2>/dev/null`],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => undefined);
  return output === undefined || output.success;
}

/**
 * Removes the devices and namespaces of runs whose process is gone (killed
 * before it could tear down): their routes would otherwise shadow a new
 * run's in the same address slot, whose lock a dead run no longer holds.
 * Names carry the run's PID ("nesim<pid>", "nesim<pid>-<n>").
 */
async function removeOrphans(): Promise<void> {
  const owner = (name: string) => Number(/^nesim(\d+)/.exec(name)?.[1] ?? NaN);
  const links = (await run("ip", "-o", "link", "show")).split("\n")
    .map((line) => /^\d+: (nesim\d+)[:@]/.exec(line)?.[1]).filter((name) => name !== undefined);
  const namespaces = (await run("ip", "netns", "list")).split("\n")
    .map((line) => /^(nesim\d+-\S+)/.exec(line)?.[1]).filter((name) => name !== undefined);
  for (const name of links) {
    if (!await alive(owner(name))) await tryRun("ip", "link", "del", name);
  }
  for (const name of namespaces) {
    if (!await alive(owner(name))) await tryRun("ip", "netns", "del", name);
  }
}

/** A namespace with loopback up and a TUN device "tun0" holding `addresses` (the first is primary). */
async function makeNamespace(netns: string, addresses: readonly string[]): Promise<void> {
  await run("ip", "netns", "add", netns);
  await run("ip", "-n", netns, "link", "set", "lo", "up");
  // A restarted pod's new address is a secondary one; removing the old primary must not take it along.
  await run(
    "ip",
    "netns",
    "exec",
    netns,
    "sysctl",
    "-qw",
    "net.ipv4.conf.all.promote_secondaries=1",
  );
  await run("ip", "-n", netns, "tuntap", "add", "dev", "tun0", "mode", "tun");
  for (const address of addresses) {
    await run("ip", "-n", netns, "addr", "add", `${address}/21`, "dev", "tun0");
  }
  await run("ip", "-n", netns, "link", "set", "tun0", "up");
}

/** Exporter flags every node gets, beyond the discovery and DNS ones. */
export interface SimOptions {
  readonly nodes: number;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly maxPeers?: number;
  /** Extra peer pods, all in one namespace behind one listener, for runs under load. */
  readonly crowd?: number;
  /**
   * The crowd's addresses other than its first are routed to its namespace but held by it only
   * while {@link SimCluster.holdCrowdAddresses} says so: an address nobody holds drops what is
   * sent to it, as the address of a pod that is gone does (hollow nodes, tests/cluster/hollow.ts).
   */
  readonly crowdOnDemand?: boolean;
  /** Node names, in order (default: node-0, node-1, …); pods are named after their node. */
  readonly nodeNames?: readonly string[];
  /**
   * CPUs (a `taskset -c` list) for the link emulator and for everything that runs in the nodes'
   * namespaces (exporters, references). The emulator is a process that must run for a packet to
   * cross a link, where a wire needs no CPU at all: on a CPU of its own it never waits for a
   * sender to yield the core it shares. Default: no pinning.
   */
  readonly cpus?: { readonly emulator: string; readonly nodes: string };
}

/** A running simulated cluster. */
export class SimCluster implements AsyncDisposable {
  readonly nodes: SimNode[] = [];
  readonly #id = `${Deno.pid}`;
  readonly #control = `nesim${Deno.pid}`;
  #emulator: Deno.ChildProcess | undefined;
  #emulatorIn: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #emulatorOut: ReadableStreamDefaultReader<string> | undefined;
  #emulatorTurn: Promise<void> = Promise.resolve();
  api!: TestApiServer;
  dns!: TestDnsServer;
  #kubeconfig = "";
  readonly options: SimOptions;
  #generation = 0;
  readonly #crowdNetns = `nesim${Deno.pid}-crowd`;
  #crowdListener: Deno.ChildProcess | undefined;
  readonly #slot: { slot: number; release(): void };
  /** The control point's address: API server, DNS server, scraper. */
  readonly controlAddress: string;

  private constructor(options: SimOptions, slot: { slot: number; release(): void }) {
    this.options = options;
    this.#slot = slot;
    this.controlAddress = slotAddress(slot.slot, 1, 1);
  }

  /**
   * Builds the namespaces, the emulator and the control point; starts no
   * exporter. When `signal` aborts mid-way, what was made is removed and the
   * abort reason thrown.
   */
  static async create(options: SimOptions, signal?: AbortSignal): Promise<SimCluster> {
    await removeOrphans();
    const cluster = new SimCluster(options, await takeSlot());
    try {
      await cluster.#build(signal);
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
  }

  async #build(signal: AbortSignal | undefined): Promise<void> {
    for (let index = 0; index < this.options.nodes; index++) {
      signal?.throwIfAborted();
      const netns = `nesim${this.#id}-${index}`;
      const node: SimNode = {
        index,
        name: this.options.nodeNames?.[index] ?? `node-${index}`,
        netns,
        address: slotAddress(this.#slot.slot, 0, index + 1),
        exporter: undefined,
        podName: this.options.nodeNames?.[index]
          ? `net-exporter-${this.options.nodeNames[index]!.slice(-5)}`
          : `net-exporter-${index}-0`,
      };
      this.nodes.push(node);
      await makeNamespace(netns, [node.address]);
    }
    const crowdAddresses = this.#crowdAddresses();
    signal?.throwIfAborted();
    if (crowdAddresses.length > 0) {
      await makeNamespace(
        this.#crowdNetns,
        this.options.crowdOnDemand ? crowdAddresses.slice(0, 1) : crowdAddresses,
      );
    }
    await run("ip", "tuntap", "add", "dev", this.#control, "mode", "tun");
    await run("ip", "addr", "add", `${this.controlAddress}/21`, "dev", this.#control);
    await run("ip", "link", "set", this.#control, "up");

    const [emulatorCommand, ...emulatorArgs] = this.#pinned("emulator", ["python3", LINKEMU]);
    this.#emulator = new Deno.Command(emulatorCommand!, {
      args: emulatorArgs,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#emulatorIn = this.#emulator.stdin.getWriter();
    this.#emulatorOut = this.#emulator.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const nodes = [
      ...this.nodes.map((node) => ({ netns: node.netns, tun: "tun0", address: node.address })),
      { netns: "", tun: this.#control, address: this.controlAddress },
      ...(crowdAddresses.length > 0
        ? [{ netns: this.#crowdNetns, tun: "tun0", address: crowdAddresses[0]! }]
        : []),
    ];
    await this.#command({ nodes });
    for (const address of crowdAddresses.slice(1)) {
      signal?.throwIfAborted();
      await this.#command({ alias: { address, of: crowdAddresses[0]! } });
    }
    signal?.throwIfAborted();

    this.api = await startApiServer({ hostname: this.controlAddress });
    this.dns = await startDnsServer({ hostname: this.controlAddress });
    this.#kubeconfig = await this.api.writeKubeconfig("monitoring");
    // What in-cluster programs look up: the cluster DNS service and the DaemonSet's own.
    this.api.applyService({
      namespace: "kube-system",
      name: "kube-dns",
      clusterIP: this.controlAddress,
      ports: [
        { name: "dns", port: this.dns.port, protocol: "UDP" },
        { name: "dns-tcp", port: this.dns.port, protocol: "TCP" },
      ],
    });
    this.api.applyService({
      namespace: "monitoring",
      name: "net-exporter",
      clusterIP: "None",
      ports: [{ name: "metrics", port: EXPORTER_PORT }],
      selector: { "app.kubernetes.io/name": "net-exporter" },
    });
  }

  /**
   * The crowd's addresses a run may hand out with {@link SimCluster.holdCrowdAddresses} (every
   * one but the first, which the crowd's namespace always holds).
   */
  get crowdPool(): string[] {
    return this.#crowdAddresses().slice(1);
  }

  /**
   * Makes the crowd's namespace hold (`held`) or drop `addresses` of {@link crowdPool}, in one
   * `ip -batch`: a held address is answered by the crowd's listener, a dropped one answers
   * nothing (its packets are dropped there, as those to a pod that is gone).
   */
  async holdCrowdAddresses(addresses: readonly string[], held: boolean): Promise<void> {
    if (addresses.length === 0) return;
    const pool = new Set(this.crowdPool);
    const stray = addresses.find((address) => !pool.has(address));
    if (stray !== undefined) {
      throw new Error(
        `Cannot hold crowd address ${stray}: current run's crowd has no such address`,
      );
    }
    const child = new Deno.Command("ip", {
      args: ["-n", this.#crowdNetns, "-force", "-batch", "-"],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
      env: CHILD_ENV,
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(
      new TextEncoder().encode(
        addresses.map((address) => `addr ${held ? "add" : "del"} ${address}/21 dev tun0\n`)
          .join(""),
      ),
    );
    await writer.close();
    const output = await child.output();
    // An address already held (or already dropped) is what was asked: only other failures count.
    const failures = new TextDecoder().decode(output.stderr).split("\n").filter((line) =>
      line !== "" && !/File exists|Cannot assign requested address|Command failed/.test(line)
    );
    if (failures.length > 0) {
      throw new Error(`Cannot ${held ? "hold" : "drop"} crowd addresses: ${failures.join("; ")}`);
    }
  }

  /** Blocks 4–7 of the slot: one address per crowd pod, up to 1,000. */
  #crowdAddresses(): string[] {
    return Array.from(
      { length: this.options.crowd ?? 0 },
      (_, index) => slotAddress(this.#slot.slot, 4 + Math.floor(index / 250), (index % 250) + 1),
    );
  }

  /**
   * Lists the crowd's pods (one node each) and starts the one listener that
   * answers for all their addresses, on each of `ports`.
   */
  async startCrowd(
    ports: readonly number[] = [EXPORTER_PORT],
    { listPods = true }: {
      /** Lists one pod per crowd address in the stand-in API server (not with a real one). */
      listPods?: boolean;
    } = {},
  ): Promise<void> {
    this.#crowdListener = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.#crowdNetns,
        "python3",
        "-c",
        CROWD_LISTENER,
        ...ports.map(String),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = this.#crowdListener.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let line = "";
    while (!line.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("Cannot start the crowd's listener");
      line += value;
    }
    reader.releaseLock();
    if (!listPods) return;
    this.#crowdAddresses().forEach((address, index) =>
      this.api.apply({ name: `crowd-${index}`, node: `crowd-node-${index}`, ips: [address] })
    );
  }

  #command(command: unknown): Promise<void> {
    return this.#commands([command]);
  }

  /**
   * Sends `commands` in one write. The emulator applies every command of one
   * read before it forwards another packet, so a node is cut off on all its
   * links at one instant, not link by link while probes go through.
   */
  #commands(commands: readonly unknown[]): Promise<void> {
    // One exchange at a time: two at once would read each other's answers.
    const turn = this.#emulatorTurn.then(() => this.#exchange(commands));
    this.#emulatorTurn = turn.catch(() => {});
    return turn;
  }

  async #exchange(commands: readonly unknown[]): Promise<void> {
    const text = commands.map((command) => JSON.stringify(command) + "\n").join("");
    await this.#emulatorIn!.write(new TextEncoder().encode(text));
    let answer = "";
    let lines = 0;
    while (lines < commands.length) {
      const { value, done } = await this.#emulatorOut!.read();
      if (done) throw new Error("Cannot drive the link emulator: it exited");
      answer += value;
      lines += value.split("\n").length - 1;
    }
    const refused = answer.split("\n").find((line) => line !== "" && !/^(ready|ok)/.test(line));
    if (refused !== undefined) throw new Error(`Link emulator said: ${refused}`);
  }

  /** Sets the impairment of the link from `src` to `dst` (one way). */
  setLink(src: SimNode, dst: SimNode, settings: LinkSettings): Promise<void> {
    return this.#command({ link: { src: src.address, dst: dst.address, ...settings } });
  }

  /** Sets the impairment of every link not set one by one (e.g. to and from the crowd). */
  setDefaultLink(settings: LinkSettings): Promise<void> {
    return this.#command({ default: settings });
  }

  /** Sets both directions of every link between nodes (not the control point's), all at once. */
  setAllLinks(settings: LinkSettings): Promise<void> {
    return this.#commands(
      this.nodes.flatMap((src) =>
        this.nodes.filter((dst) => dst !== src).map((dst) => ({
          link: { src: src.address, dst: dst.address, ...settings },
        }))
      ),
    );
  }

  /** Cuts (loss 1) or restores (`settings`) both directions of every link of `node`, all at once. */
  isolate(node: SimNode, settings: LinkSettings | "cut"): Promise<void> {
    const link = settings === "cut" ? { loss: 1 } : settings;
    return this.#commands(
      this.nodes.filter((other) => other !== node).flatMap((other) => [
        { link: { src: node.address, dst: other.address, ...link } },
        { link: { src: other.address, dst: node.address, ...link } },
      ]),
    );
  }

  /** Starts every node's exporter and lists its pod in the stand-in API server. */
  async startExporters(
    extraArgs: string[] = [],
    /** Further flags for one node's exporter, after the others (a later flag wins). */
    nodeArgs: (node: SimNode) => string[] = () => [],
  ): Promise<void> {
    await Promise.all(
      this.nodes.map((node) => this.#startExporter(node, [...extraArgs, ...nodeArgs(node)])),
    );
  }

  /** Lists (or updates) `node`'s current pod in the stand-in API server. */
  applyPod(node: SimNode, ready: boolean): void {
    this.api.apply({
      name: node.podName,
      node: node.name,
      ips: [node.address],
      ready,
      labels: { ...POD_LABELS },
    });
  }

  async #startExporter(node: SimNode, extraArgs: string[], ready = true): Promise<void> {
    this.applyPod(node, ready);
    node.exporter = await startExporter(
      [
        `--k8s.kubeconfig=${this.#kubeconfig}`,
        `--network.port=${EXPORTER_PORT}`,
        `--network.interval=${this.options.intervalMs}ms`,
        `--network.timeout=${this.options.timeoutMs}ms`,
        `--network.max-peers=${this.options.maxPeers ?? 10}`,
        `--dns.servers=${this.dns.address}`,
        "--dns.hosts=kubernetes.default.svc.cluster.local.",
        `--dns.interval=${this.options.intervalMs}ms`,
        `--dns.timeout=${this.options.timeoutMs}ms`,
        ...extraArgs,
      ],
      {
        host: node.address,
        port: EXPORTER_PORT,
        command: this.#exporterCommand(node),
        env: {
          POD_NAME: node.podName,
          NODE_NAME: node.name,
          POD_IP: node.address,
          POD_NAMESPACE: "monitoring",
        },
      },
    );
  }

  /**
   * Starts one more exporter in `node`'s namespace on `port`, with `args` only
   * (no discovery unless they ask for it): e.g. the same exporter with other
   * settings beside the pod's, for a comparison. It is stopped at teardown.
   */
  async startExtraExporter(node: SimNode, port: number, args: string[]): Promise<ExporterProcess> {
    const exporter = await startExporter(args, {
      host: node.address,
      port,
      command: this.#exporterCommand(node),
    });
    this.beforeTeardown(() => exporter.stop().then(() => {}, () => {}));
    return exporter;
  }

  /** Replaces `node`'s exporter the way a rolling update does (see {@link replacePod}). */
  async restart(
    node: SimNode,
    beforeStop: () => Promise<void>,
    extraArgs: string[] = [],
  ): Promise<void> {
    await this.replacePod(node, {
      beforeStop,
      stop: async () => void await node.exporter!.stop(),
      start: async () => {
        await this.#startExporter(node, extraArgs, false);
        await waitUntilReady(node.exporter!, 10 * this.options.intervalMs);
      },
    });
  }

  /**
   * Replaces `node`'s pod the way a rolling update does: the pod turns not
   * ready, then is marked deleting; `beforeStop` runs, `stop` ends its
   * processes and the pod is removed; a new pod (new name, new IP) is listed
   * not ready, `start` starts its processes (resolving once they are ready)
   * and the pod turns Ready.
   */
  async replacePod(
    node: SimNode,
    steps: { beforeStop(): Promise<void>; stop(): Promise<void>; start(): Promise<void> },
  ): Promise<void> {
    const old = { podName: node.podName, address: node.address };
    this.api.apply({
      name: old.podName,
      node: node.name,
      ips: [old.address],
      ready: false,
      labels: { ...POD_LABELS },
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    this.api.apply({
      name: old.podName,
      node: node.name,
      ips: [old.address],
      ready: false,
      deleting: true,
      labels: { ...POD_LABELS },
    });
    await steps.beforeStop();
    await steps.stop();
    this.api.remove(old.podName);
    const generation = await this.renumber(node);
    node.podName = `net-exporter-${node.index}-${generation}`;
    this.applyPod(node, false);
    await steps.start();
    this.applyPod(node, true);
  }

  /**
   * Gives `node` a new address, as a new pod gets one: the node's network
   * namespace holds one pod address at a time, so every link setting of the
   * node applies to its current pod. The old address goes before the new pod
   * starts, so its connections leave from the new one. Returns the pod
   * generation (for its name).
   */
  async renumber(node: SimNode): Promise<number> {
    const generation = ++this.#generation;
    if (generation >= 500) {
      throw new Error(
        `Cannot give a pod an address: current run has given ${generation - 1} already`,
      );
    }
    const old = node.address;
    node.address = slotAddress(
      this.#slot.slot,
      2 + Math.floor(generation / 250),
      (generation % 250) + 1,
    );
    await run("ip", "-n", node.netns, "addr", "add", `${node.address}/21`, "dev", "tun0");
    await this.#command({ alias: { address: node.address, of: old } });
    await run("ip", "-n", node.netns, "addr", "del", `${old}/21`, "dev", "tun0");
    await this.#command({ unalias: { address: old } });
    return generation;
  }

  /**
   * Handshake times (milliseconds) from `from` to `addresses`' `port`, in turn,
   * measured by Python's socket.connect: `samples` of them, one starting every
   * `periodMs`, so a measurement can run beside the exporters for their window.
   */
  async reference(
    from: SimNode,
    addresses: readonly string[],
    samples: number,
    { port = EXPORTER_PORT, periodMs = 50, clock = "wall" }: {
      port?: number;
      periodMs?: number;
      /** wall: Python's clock around connect(); kernel: the RTT the kernel measured (TCP_INFO). */
      clock?: "wall" | "kernel";
    } = {},
  ): Promise<number[]> {
    const [command, ...args] = this.#pinned("nodes", [
      "env",
      `REFERENCE_CLOCK=${clock}`,
      "ip",
      "netns",
      "exec",
      from.netns,
      "python3",
      REFERENCE,
      String(port),
      String(samples),
      String(periodMs),
      ...addresses,
    ]);
    const output = await run(command!, ...args);
    return JSON.parse(output) as number[];
  }

  /** The exporter from source in `node`'s namespace, as `deno task start` runs it. */
  #exporterCommand(node: SimNode): string[] {
    return this.#pinned("nodes", [
      "ip",
      "netns",
      "exec",
      node.netns,
      Deno.execPath(),
      "run",
      ...START_FLAGS,
      MAIN,
    ]);
  }

  /** `command` run on the CPUs of `role` when {@link SimOptions.cpus} says so. */
  #pinned(role: "emulator" | "nodes", command: string[]): string[] {
    const cpus = this.options.cpus?.[role];
    return cpus === undefined ? command : ["taskset", "-c", cpus, ...command];
  }

  /** Tears everything down once; a second call (e.g. Ctrl-C during a teardown) waits for the first. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.#teardown ??= this.#tearDown();
  }

  #teardown: Promise<void> | undefined;
  readonly #beforeTeardown: Array<() => PromiseLike<void>> = [];

  /**
   * Runs `dispose` first when the cluster is torn down, however that comes
   * (the end of a run, a failure, Ctrl-C): for what uses the cluster's
   * addresses from the root namespace, e.g. a Prometheus scraping the pods,
   * which must stop before the addresses would follow the default route.
   */
  beforeTeardown(dispose: () => PromiseLike<void>): void {
    this.#beforeTeardown.push(dispose);
  }

  async #tearDown(): Promise<void> {
    for (const dispose of this.#beforeTeardown.reverse()) {
      try {
        await dispose();
      } catch { /* the rest still goes */ }
    }
    await Promise.all(this.nodes.map((node) => node.exporter?.stop().catch(() => {})));
    // The servers go while the links still carry their goodbyes: a connection whose peer
    // namespace is gone would keep them retransmitting for minutes.
    if (this.api) await this.api[Symbol.asyncDispose]();
    if (this.dns) await this.dns[Symbol.asyncDispose]();
    if (this.#emulator) {
      await this.#emulatorIn?.close().catch(() => {});
      await this.#emulatorOut?.cancel().catch(() => {});
      await this.#emulator.status;
    }
    if (this.#crowdListener) {
      await this.#crowdListener.stdin.close().catch(() => {});
      await this.#crowdListener.stdout.cancel().catch(() => {});
      await this.#crowdListener.status;
    }
    for (const node of this.nodes) await tryRun("ip", "netns", "del", node.netns);
    if (this.options.crowd) await tryRun("ip", "netns", "del", this.#crowdNetns);
    await tryRun("ip", "link", "del", this.#control);
    this.#slot.release();
  }
}

/**
 * For command-line runs: builds the cluster with SIGINT and SIGTERM handled
 * from the first step, so no namespace outlives the run. A signal while
 * building stops the build and removes what was made; afterwards it tears the
 * cluster down. Either way the process exits 130 or 143.
 */
export async function createForCommandLine(options: SimOptions): Promise<SimCluster> {
  const building = new AbortController();
  let cluster: SimCluster | undefined;
  for (const [name, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(name, () => {
      if (cluster) exitAfterTeardown(cluster, code);
      else building.abort(code);
    });
  }
  try {
    cluster = await SimCluster.create(options, building.signal);
  } catch (error) {
    if (building.signal.aborted) Deno.exit(building.signal.reason as number);
    throw error;
  }
  return cluster;
}

/**
 * For command-line runs: tears `cluster` down and exits with `code`. The
 * teardown gets at most 30 s, so a run always ends by itself.
 */
export async function exitAfterTeardown(cluster: SimCluster, code: number): Promise<never> {
  await Promise.race([
    cluster[Symbol.asyncDispose](),
    new Promise((resolve) => setTimeout(resolve, 30_000)),
  ]);
  Deno.exit(code);
}

// One socket per port on every address of the crowd's namespace; exits when stdin closes.
const CROWD_LISTENER = `
import select, socket, sys
servers = []
for port in sys.argv[1:]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", int(port)))
    server.listen(4096)
    servers.append(server)
# The crowd stands in for net-exporter pods: it answers their UDP echo as they do
# (collectors/echo_wire.ts: "NXEC", version 1, request type 1 → the same bytes as type 2).
# The reply leaves from the address the request came to (IP_PKTINFO): a socket bound to 0.0.0.0
# would answer from the namespace's first address, which an asker's connected socket drops.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
echoes = []
for port in sys.argv[1:]:
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    echo.bind(("0.0.0.0", int(port)))
    echoes.append(echo)
print("listening", flush=True)
while True:
    readable, _, _ = select.select(servers + echoes + [sys.stdin], [], [])
    if sys.stdin in readable and not sys.stdin.buffer.read1(1):
        break
    for server in servers:
        if server in readable:
            connection, _ = server.accept()
            connection.close()
    for echo in echoes:
        if echo in readable:
            data, ancillary, _, sender = echo.recvmsg(65536, socket.CMSG_SPACE(12))
            if data[:6] != b"NXEC\\x01\\x01" or len(data) < 20:
                continue
            info = [cdata for level, kind, cdata in ancillary if kind == IP_PKTINFO]
            # struct in_pktinfo: ifindex, local address, the address it was sent to.
            control = [(socket.IPPROTO_IP, IP_PKTINFO, b"\\x00" * 4 + info[0][8:12] + b"\\x00" * 4)] if info else []
            echo.sendmsg([data[:5] + b"\\x02" + data[6:]], control, 0, sender)
`;
