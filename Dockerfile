# syntax=docker/dockerfile:1
# net-exporter: one compiled binary on distroless. Build with `docker build -t net-exporter .`
# The base images are pinned by tag; pin them by digest (image@sha256:…) in your build pipeline —
# the machines this file was written on cannot reach a registry to look the digests up.

FROM denoland/deno:2.9.6 AS build
WORKDIR /app
ENV DENO_NO_UPDATE_CHECK=1
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY main.ts ./
COPY collectors/ collectors/
COPY exporter/ exporter/
COPY k8s/ k8s/
COPY lib/ lib/
COPY web/ web/
# The permission set, V8 flags and output path live in deno.json's compile task, nowhere else.
RUN deno task compile

# cc-debian12 has glibc and libgcc_s, which the Deno runtime needs (static and base lack one of them);
# its /usr/lib/x86_64-linux-gnu/libc.so.6 (or aarch64-linux-gnu) is also the libc the exporter opens
# through FFI for kernel-timed handshakes (the compile task grants FFI for those paths only).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /app/net-exporter /net-exporter
USER nonroot
# V8 sizes its heap from the container's memory limit.
ENV DENO_USE_CGROUPS=1
EXPOSE 8000
ENTRYPOINT ["/net-exporter"]
