# syntax=docker/dockerfile:1
#
# The steinadler image: the `steinadler` binary, run as a non-root user, its data dir a volume.
#
#   docker build -t steinadler:0.1.0 .                       # the default target, `node`
#   docker build -t steinadler:0.1.0-distroless --target distroless .
#
# `node` (debian:bookworm-slim) also holds bash and deploy/steinadler-pod, which
# deploy/kubernetes and deploy/compose.yaml run; `distroless` holds the binary alone, for
# running `steinadler node start` with flags of your own. Both run `steinadler` as uid 65532.
# The binary links only glibc and libgcc_s (README, "Running in containers and Kubernetes"),
# which is what gcr.io/distroless/cc adds over distroless/static.

ARG RUST_IMAGE=rust:1.95-bookworm

FROM ${RUST_IMAGE} AS builder
# The CLI embeds the `hello` module, which tests/modules/build.rs builds from modules/ for
# wasm32-wasip1.
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
# rust-toolchain.toml names the `stable` channel; build with the image's own toolchain rather
# than have rustup download another. Debug info (the release profile keeps it for profiling)
# is stripped from the copy that goes into the image; symbols stay, so backtraces name functions.
# The `dist` profile is `release` with fat LTO: a smaller binary, so less of it resident per node.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    export RUSTUP_TOOLCHAIN="$(rustup default | cut -d' ' -f1)" \
    && cargo build --profile dist --locked -p steinadler-cli \
    && mkdir -p /out/data \
    && objcopy --strip-debug target/dist/steinadler /out/steinadler

# The binary alone, on glibc and libgcc_s.
FROM gcr.io/distroless/cc-debian12:nonroot AS distroless
COPY --from=builder /out/steinadler /usr/local/bin/steinadler
# An empty /data owned by the user, so that a new volume mounted there is writable.
COPY --from=builder --chown=65532:65532 /out/data /data
USER 65532:65532
# Logs go to a file or a collector, not a terminal: no colour codes.
ENV NO_COLOR=1
VOLUME /data
# gRPC (TCP), gossip (TCP and UDP), Prometheus metrics (plain HTTP; only with --metrics).
EXPOSE 7100/tcp 7101/tcp 7101/udp 9464/tcp
ENTRYPOINT ["steinadler"]
CMD ["--help"]

# The default: the binary, bash (for deploy/steinadler-pod) and getent (for its DNS look-ups).
FROM debian:bookworm-slim AS node
RUN groupadd --gid 65532 steinadler \
    && useradd --uid 65532 --gid 65532 --home-dir /home/steinadler --create-home \
       --shell /usr/sbin/nologin steinadler \
    && install -d -o 65532 -g 65532 /data
COPY --from=builder /out/steinadler /usr/local/bin/steinadler
COPY --chmod=0755 deploy/steinadler-pod /usr/local/bin/steinadler-pod
USER 65532:65532
# `steinadler login` keeps the client certificate in $HOME/.config/steinadler.
ENV HOME=/home/steinadler NO_COLOR=1
WORKDIR /home/steinadler
VOLUME /data
EXPOSE 7100/tcp 7101/tcp 7101/udp 9464/tcp
ENTRYPOINT ["steinadler"]
CMD ["--help"]
