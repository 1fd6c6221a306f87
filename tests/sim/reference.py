#!/usr/bin/env python3
"""Reference handshake times, taken by a different tool than the exporter.

Usage: reference.py PORT SAMPLES PERIOD_MS HOST [HOST...]
Prints a JSON list of TCP handshake times in milliseconds: time.perf_counter()
around socket.connect(), to the hosts in turn, one handshake starting every
PERIOD_MS (or as soon as the previous one ends, if it takes longer), so that a
measurement can run beside the exporters for as long as their window lasts.
"""

import itertools
import json
import socket
import sys
import time

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
    times.append((time.perf_counter() - started) * 1000)
    sock.close()
print(json.dumps(times))
