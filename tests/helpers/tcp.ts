/**
 * TCP peers for tests: a listener that accepts and closes, a port nobody
 * listens on, and a port whose SYNs are never answered — all on loopback.
 * @module
 */

/** A listener that accepts every connection and closes it at once. */
export interface TestListener extends AsyncDisposable {
  readonly hostname: string;
  readonly port: number;
  readonly address: string;
  accepted: number;
}

/** Starts an accepting listener on `hostname` (default 127.0.0.1). */
export function startListener(hostname = "127.0.0.1", port = 0): TestListener {
  const listener = Deno.listen({ hostname, port });
  const bound = (listener.addr as Deno.NetAddr).port;
  const state: TestListener = {
    hostname,
    port: bound,
    address: hostname.includes(":") ? `[${hostname}]:${bound}` : `${hostname}:${bound}`,
    accepted: 0,
    async [Symbol.asyncDispose]() {
      listener.close();
      await loop;
    },
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        state.accepted++;
        conn.close();
      }
    } catch { /* closed */ }
  })();
  return state;
}

/** A loopback port with nothing listening: bind, note the port, close. */
export function closedPort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A loopback UDP port with nothing bound: bind, note the port, close. */
export function closedUdpPort(hostname = "127.0.0.1"): number {
  const socket = Deno.listenDatagram({ hostname, port: 0, transport: "udp" });
  const port = (socket.addr as Deno.NetAddr).port;
  socket.close();
  return port;
}

/**
 * A loopback port that never completes a handshake: a Python socket listening
 * with a backlog of 0 and never accepting, its queue filled by one connection,
 * so every further SYN is dropped and the dialler times out.
 */
export interface Blackhole extends AsyncDisposable {
  readonly port: number;
  readonly address: string;
}

/** Starts a {@link Blackhole} on 127.0.0.1. */
export async function startBlackhole(): Promise<Blackhole> {
  const child = new Deno.Command("python3", {
    args: ["-c", BLACKHOLE_PY],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("Cannot start blackhole: python3 exited before printing its port");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const port = Number(text.trim());
  return {
    port,
    address: `127.0.0.1:${port}`,
    async [Symbol.asyncDispose]() {
      await child.stdin.close();
      await child.stdout.cancel();
      await child.status;
    },
  };
}

// Exits when its stdin closes, so it cannot outlive the test.
const BLACKHOLE_PY = `
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(0)
filler = socket.create_connection(server.getsockname())
print(server.getsockname()[1], flush=True)
sys.stdin.read()
`;
