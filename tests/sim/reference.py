#!/usr/bin/env python3
"""Reference handshake times, taken by a different tool than the exporter.

Usage: [REFERENCE_CLOCK=wall|kernel] reference.py PORT SAMPLES PERIOD_MS HOST [HOST...]
Prints a JSON list of TCP handshake times in milliseconds: time.perf_counter()
around socket.connect() (REFERENCE_CLOCK=wall, the default), or the round trip
the kernel measured for the handshake (kernel: tcpi_rtt of TCP_INFO, read with
Python's own getsockopt, struct tcp_info as in include/uapi/linux/tcp.h), to
the hosts in turn, one handshake starting every
PERIOD_MS (or as soon as the previous one ends, if it takes longer), so that a
measurement can run beside the exporters for as long as their window lasts.
"""

import itertools
import json
import os
import socket
import struct
import sys
import time

TCP_INFO_BYTES = 104  # up to tcpi_total_retrans
TCPI_RTT_OFFSET = 68  # __u32 tcpi_rtt, microseconds
kernel = os.environ.get("REFERENCE_CLOCK", "wall") == "kernel"

port, samples, period = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000
hosts = sys.argv[4:]
times = []
next_start = time.perf_counter()
for host in itertools.islice(itertools.cycle(hosts), samples):
    time.sleep(max(0.0, next_start - time.perf_counter()))
    next_start += period
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    started = time.perf_counter()
    sock.connect((host, port))
    wall_ms = (time.perf_counter() - started) * 1000
    if kernel:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
        (rtt_us,) = struct.unpack_from("I", info, TCPI_RTT_OFFSET)
        times.append(rtt_us / 1000)
    else:
        times.append(wall_ms)
    sock.close()
print(json.dumps(times))
