# Tiny images for amb's three programs: a Debian builder makes fully static, stripped
# binaries; each program then gets its own FROM scratch image holding only its binary.
#
#   docker build --target simple-amb -t amb/simple-amb .
#   docker build --target docker-register -t amb/docker-register .
#   docker build --target dynamic-etcd-amb -t amb/dynamic-etcd-amb .
#
# podman 4.3 needs --build-arg PROGRAMS=builder as well: it does not see through the default of
# `FROM ${PROGRAMS}` below, skips the builder stage and fails with "builder: image not known".
# tools/make-images.sh (make images) passes it, and removes the builder image afterwards.
#
# Every stage carries the label amb.image, so that tools/make-images.sh can remove the images a
# rebuild leaves untagged (the ones it replaced, and the prebuilt stage's), and nothing else.
#
# A scratch image resolves numeric addresses; names only through /etc/hosts (which
# container engines mount) or DNS. Prefer numeric addresses.
#
# With --build-arg PROGRAMS=prebuilt and a folder holding the three static programs as the build
# context, the images take those programs instead of building them (what `make test` does with the
# programs its static build test made: tools/make-images.sh --programs DIR).
ARG PROGRAMS=builder

FROM debian:bookworm AS builder
LABEL amb.image="builder"
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make cmake libasio-dev picojson-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY include include
COPY examples examples
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DAMB_STATIC=ON -DAMB_BUILD_TESTS=OFF \
 && cmake --build /build -j "$(nproc)"

FROM scratch AS prebuilt
LABEL amb.image="prebuilt"
COPY simple-amb docker-register dynamic-etcd-amb /build/examples/

FROM ${PROGRAMS} AS programs

FROM scratch AS simple-amb
LABEL amb.image="simple-amb"
COPY --from=programs /build/examples/simple-amb /simple-amb
USER 65534:65534
EXPOSE 10000
ENTRYPOINT ["/simple-amb"]

# docker-register reads the engine's API socket, which is usually root-only: it runs as
# root unless the socket is made readable to another user (see README, "Security").
FROM scratch AS docker-register
LABEL amb.image="docker-register"
COPY --from=programs /build/examples/docker-register /docker-register
ENTRYPOINT ["/docker-register"]

FROM scratch AS dynamic-etcd-amb
LABEL amb.image="dynamic-etcd-amb"
COPY --from=programs /build/examples/dynamic-etcd-amb /dynamic-etcd-amb
USER 65534:65534
ENTRYPOINT ["/dynamic-etcd-amb"]
