#!/usr/bin/env python3
"""Userspace link emulator for the simulated cluster (this kernel has no netem).

Each simulated node is a network namespace with a TUN device holding its
198.18.0.0/15 address. This process attaches to every node's TUN device, reads
each IPv4 packet a node sends, holds it for the one-way delay (plus jitter) of
the link from sender to receiver, drops it with the link's loss probability,
and writes it into the receiver's TUN device.

stdin, one JSON object per line:
  {"nodes": [{"netns": "ne-sim-a", "tun": "tun0", "address": "198.18.0.1"}, ...]}   first line
  {"link": {"src": "198.18.0.1", "dst": "198.18.0.2", "delay_ms": 20, "jitter_ms": 0, "loss": 0}}
      "syn_loss": 1 drops only TCP SYNs without ACK from src: src can open no connection to dst,
      while dst's connections to src (whose SYN-ACKs src sends) still complete
  {"default": {"delay_ms": 0, "jitter_ms": 0, "loss": 0}}
  {"alias": {"address": "198.18.2.1", "of": "198.18.0.1"}}   a node's new address (a restarted pod)
  {"unalias": {"address": "198.18.0.1"}}                      an address that is gone
stdout: "ready" once attached, then one "ok" per command. Exits when stdin closes.
"""

import ctypes
import fcntl
import heapq
import json
import os
import random
import select
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def attach_tun(netns, name):
    """Opens the TUN device `name` that lives in namespace `netns` ("": this process's own)."""
    if not netns:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        return fd
    home = "/proc/self/ns/net"
    home_fd = os.open(home, os.O_RDONLY)
    try:
        enter_netns(f"/run/netns/{netns}")
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        return fd
    finally:
        libc.setns(home_fd, CLONE_NEWNET)
        os.close(home_fd)


def main():
    config = json.loads(sys.stdin.readline())
    fd_by_address = {}
    address_by_fd = {}
    for node in config["nodes"]:
        fd = attach_tun(node["netns"], node["tun"])
        fd_by_address[node["address"]] = fd
        address_by_fd[fd] = node["address"]
    default = {"delay_ms": 0.0, "jitter_ms": 0.0, "loss": 0.0}
    links = {}
    pending = []  # heap of (due, sequence, fd, packet)
    sequence = 0
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    buffered = b""
    print("ready", flush=True)
    while True:
        timeout = None
        if pending:
            timeout = max(0.0, pending[0][0] - time.monotonic())
        readable, _, _ = select.select([stdin, *address_by_fd], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            if fd == stdin:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    return
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    command = json.loads(line)
                    if "link" in command:
                        link = command["link"]
                        links[(link["src"], link["dst"])] = {
                            "delay_ms": float(link.get("delay_ms", 0)),
                            "jitter_ms": float(link.get("jitter_ms", 0)),
                            "loss": float(link.get("loss", 0)),
                            "syn_loss": float(link.get("syn_loss", 0)),
                            "max_size": int(link.get("max_size", 0)),
                        }
                    if "alias" in command:
                        alias = command["alias"]
                        fd_by_address[alias["address"]] = fd_by_address[alias["of"]]
                    if "unalias" in command:
                        fd_by_address.pop(command["unalias"]["address"], None)
                    if "default" in command:
                        default = {key: float(command["default"].get(key, 0)) for key in default}
                    print("ok", flush=True)
                continue
            while True:
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if len(packet) < 20 or packet[0] >> 4 != 4:
                    continue  # IPv4 only
                src = ".".join(str(byte) for byte in packet[12:16])
                dst = ".".join(str(byte) for byte in packet[16:20])
                target = fd_by_address.get(dst)
                if target is None:
                    continue
                link = links.get((src, dst), default)
                if link.get("max_size", 0) > 0 and len(packet) > link["max_size"]:
                    continue  # an MTU black hole: no ICMP back
                if link["loss"] > 0 and random.random() < link["loss"]:
                    continue
                if link.get("syn_loss", 0) > 0 and packet[9] == 6:
                    flags = packet[(packet[0] & 0x0F) * 4 + 13]
                    if flags & 0x12 == 0x02 and random.random() < link["syn_loss"]:
                        continue
                delay = link["delay_ms"] + random.uniform(-1, 1) * link["jitter_ms"]
                sequence += 1
                heapq.heappush(pending, (now + max(0.0, delay) / 1000, sequence, target, packet))
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, target, packet = heapq.heappop(pending)
            try:
                os.write(target, packet)
            except OSError:
                pass  # the receiving device went away


if __name__ == "__main__":
    main()
