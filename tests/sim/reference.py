#!/usr/bin/env python3
"""Reference handshake times, taken by a different tool than the exporter.

Usage: reference.py HOST PORT SAMPLES
Prints a JSON list of TCP handshake times in milliseconds: time.perf_counter()
around socket.connect(), 50 ms apart.
"""

import json
import socket
import sys
import time

host, port, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times = []
for _ in range(samples):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    started = time.perf_counter()
    sock.connect((host, port))
    times.append((time.perf_counter() - started) * 1000)
    sock.close()
    time.sleep(0.05)
print(json.dumps(times))
