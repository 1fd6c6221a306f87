/**
 * `host:port` as operators write it: `10.0.0.10:53`, `[fd00::1]:8000`,
 * `node-1.example:8000`, or a bare host where a default port applies.
 * @module
 */

import { isIP } from "./ip.ts";

/** A host (IP literal without brackets, or a name) and a port. */
export interface HostPort {
  readonly hostname: string;
  readonly port: number;
}

const NAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;

/**
 * Parses `host:port`, `[v6]:port`, or — when `defaultPort` is given — a bare host.
 * Port 0 ("any free port") only where `allowPortZero` says so: a listener.
 * @throws {RangeError} naming the value when it is not an address.
 */
export function parseHostPort(
  text: string,
  { defaultPort, allowPortZero = false }: { defaultPort?: number; allowPortZero?: boolean } = {},
): HostPort {
  const fail = (why: string): never => {
    throw new RangeError(`Cannot parse address: current value is "${text}" (${why})`);
  };
  let hostname: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    hostname = bracketed[1]!;
    portText = bracketed[2];
    if (isIP(hostname) !== 6) fail("brackets hold an IPv6 address");
  } else if (isIP(text) === 6) {
    hostname = text; // a bare IPv6 address has no port
  } else {
    const colon = text.lastIndexOf(":");
    hostname = colon === -1 ? text : text.slice(0, colon);
    portText = colon === -1 ? undefined : text.slice(colon + 1);
    if (hostname === "") fail("the host is empty");
    if (isIP(hostname) === 0 && !NAME.test(hostname)) {
      fail("the host is not an IP address or a DNS name");
    }
  }
  if (portText === undefined) {
    if (defaultPort === undefined) fail("expected host:port");
    return { hostname, port: defaultPort! };
  }
  const port = Number(portText);
  const lowest = allowPortZero ? 0 : 1;
  if (!/^\d+$/.test(portText) || port < lowest || port > 65535) {
    fail(`the port must be ${lowest}-65535`);
  }
  return { hostname, port };
}

/** Formats an address back to `host:port`, bracketing IPv6 literals. */
export function formatHostPort({ hostname, port }: HostPort): string {
  return isIP(hostname) === 6 ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}
