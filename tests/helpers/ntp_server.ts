/**
 * An SNTP server for tests (RFC 4330 server side), written apart from the
 * prober's own codec so that one mistake cannot hide in both. The test
 * decides every reply: how far its clock is off, how long the path is,
 * stratum, leap, kiss-o'-death, forgeries and silence.
 * @module
 */

/** How the server answers one request. */
export interface NtpBehaviour {
  /** The server's clock runs this far ahead of the real one (negative: behind). */
  offsetMs?: number;
  /**
   * A path of this round trip, half each way: the receive timestamp is stamped
   * as if the request arrived half of it late, and the reply is sent once all
   * of it has passed, its transmit timestamp stamped as if it left at once.
   * Timer lateness counts as the server's own processing time (between the
   * receive and transmit timestamps), so it does not skew the offset.
   */
  delayMs?: number;
  stratum?: number;
  leap?: number;
  /** Replies with stratum 0 and this code (e.g. "RATE") as reference ID. */
  kiss?: string;
  /** Never replies. */
  silent?: boolean;
  /**
   * Before the real reply (or instead of it, with `silent`): a reply with
   * another origin timestamp, one from another port, one in client mode, or
   * 20 bytes of junk.
   */
  forge?: "wrong-origin" | "other-port" | "client-mode" | "short";
  /** Sends a zero transmit timestamp. */
  zeroTransmit?: boolean;
  /** Claims it held the request longer than the round trip took. */
  claimsLongHold?: boolean;
  /** Reply version (4 unless given). */
  version?: number;
  /** Root delay and dispersion, seconds. */
  rootDelay?: number;
  rootDispersion?: number;
}

/** A running test SNTP server. */
export interface TestNtpServer extends AsyncDisposable {
  readonly hostname: string;
  readonly port: number;
  /** `hostname:port`, as `--ntp.servers` takes it. */
  readonly address: string;
  /** Requests received so far. */
  readonly requests: number;
  behaviour: NtpBehaviour;
}

const UNIX_TO_NTP_SECONDS = 2_208_988_800;

/** Writes ms since the Unix epoch as a 64-bit NTP timestamp. */
function writeTimestamp(view: DataView, offset: number, unixMs: number): void {
  const seconds = Math.floor(unixMs / 1000);
  const fraction = Math.floor(((unixMs - seconds * 1000) / 1000) * 2 ** 32);
  view.setUint32(offset, (seconds + UNIX_TO_NTP_SECONDS) >>> 0);
  view.setUint32(offset + 4, Math.min(fraction, 2 ** 32 - 1));
}

/**
 * The real time, ms since the Unix epoch, to a fraction of a millisecond:
 * the system clock read at its next millisecond tick, plus monotonic time
 * since. (`performance.timeOrigin` would drift from the system clock as it is
 * slewed while the tests run.)
 */
function realNow(): number {
  const monotonic = performance.now();
  const first = Date.now();
  for (let spins = 0; spins < 1_000_000; spins++) {
    const wall = Date.now();
    if (wall !== first) return wall - (performance.now() - monotonic);
  }
  return first + 0.5;
}

function reply(
  request: Uint8Array,
  behaviour: NtpBehaviour,
  receiveMs: number,
  transmitMs: number,
): Uint8Array {
  const packet = new Uint8Array(48);
  const view = new DataView(packet.buffer);
  const stratum = behaviour.kiss !== undefined ? 0 : behaviour.stratum ?? 2;
  packet[0] = ((behaviour.leap ?? 0) << 6) | ((behaviour.version ?? 4) << 3) | 4;
  packet[1] = stratum;
  packet[2] = 6;
  packet[3] = 0xec; // precision 2^-20 s
  view.setUint32(4, Math.round((behaviour.rootDelay ?? 0.002) * 0x1_0000));
  view.setUint32(8, Math.round((behaviour.rootDispersion ?? 0.001) * 0x1_0000));
  if (behaviour.kiss !== undefined) {
    packet.set(new TextEncoder().encode(behaviour.kiss.padEnd(4, "\0").slice(0, 4)), 12);
  } else {
    packet.set([192, 0, 2, 123], 12);
  }
  writeTimestamp(view, 16, receiveMs - 30_000);
  packet.set(request.subarray(40, 48), 24); // origin ← the request's transmit timestamp
  writeTimestamp(view, 32, receiveMs);
  if (!behaviour.zeroTransmit) writeTimestamp(view, 40, transmitMs);
  return packet;
}

/** Starts a server on `hostname` (IPv4, default 127.0.0.1) and a free port. */
export function startNtpServer(
  behaviour: NtpBehaviour = {},
  hostname = "127.0.0.1",
): TestNtpServer {
  const socket = Deno.listenDatagram({ hostname, port: 0, transport: "udp" });
  const forger = Deno.listenDatagram({ hostname, port: 0, transport: "udp" });
  const port = (socket.addr as Deno.NetAddr).port;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let requests = 0;
  const server: TestNtpServer = {
    hostname,
    port,
    address: `${hostname}:${port}`,
    get requests() {
      return requests;
    },
    behaviour,
    async [Symbol.asyncDispose]() {
      for (const timer of timers) clearTimeout(timer);
      socket.close();
      forger.close();
      await serving;
    },
  };
  const answer = (request: Uint8Array, from: Deno.Addr, arrivedAt: number) => {
    const how = server.behaviour;
    const delay = how.delayMs ?? 0;
    const offset = how.offsetMs ?? 0;
    const receiveMs = arrivedAt + delay / 2 + offset;
    const send = async () => {
      const sentAt = realNow();
      // Lateness past the path's round trip is the server's processing time.
      let transmitMs = receiveMs + Math.max(0, sentAt - arrivedAt - delay);
      if (how.claimsLongHold) transmitMs = receiveMs + delay + 1_000;
      const genuine = reply(request, how, receiveMs, transmitMs);
      try {
        switch (how.forge) {
          case "wrong-origin": {
            const forged = genuine.slice();
            forged[31] = forged[31]! ^ 0xff;
            await socket.send(forged, from);
            break;
          }
          case "other-port":
            await forger.send(genuine, from);
            break;
          case "client-mode": {
            const forged = genuine.slice();
            forged[0] = (forged[0]! & 0xf8) | 3;
            await socket.send(forged, from);
            break;
          }
          case "short":
            await socket.send(genuine.subarray(0, 20), from);
            break;
        }
        if (!how.silent) await socket.send(genuine, from);
      } catch { /* closed */ }
    };
    if (delay === 0) return send();
    const timer = setTimeout(() => {
      timers.delete(timer);
      send();
    }, delay);
    timers.add(timer);
  };
  const serving = (async () => {
    try {
      for (;;) {
        const [request, from] = await socket.receive();
        const arrivedAt = realNow();
        requests++;
        if (request.length < 48) continue;
        answer(request, from, arrivedAt);
      }
    } catch { /* closed */ }
  })();
  return server;
}
