#!/usr/bin/env bash
# Build the base image pytest-programbench/base:bookworm without any container registry.
# PB_BASE_SUITE=trixie builds the same userland from trixie (the realistic Rust/Go task
# images use it: a toolchain of today's age, see images/realistic/README.md).
#
# Docker Hub is not reachable on the machines this project runs on, so `FROM debian:bookworm-slim`
# cannot be pulled. mmdebstrap assembles the same Debian bookworm userland straight from the Debian
# archive and `docker import` turns it into an image. The self-test task image (images/selftest)
# then builds FROM it with `--build-arg BASE=pytest-programbench/base:bookworm`.
#
# Idempotent: exits 0 at once when the image already exists (pass --force to rebuild).
#
# Environment:
#   PB_BASE_SUITE   Debian suite                 (default bookworm)
#   PB_BASE_IMAGE   image reference to create   (default pytest-programbench/base:$PB_BASE_SUITE)
#   DEBIAN_MIRROR   Debian archive URL           (default http://deb.debian.org/debian)
#   DOCKER          docker client executable     (default docker)
set -euo pipefail

SUITE="${PB_BASE_SUITE:-bookworm}"
IMAGE="${PB_BASE_IMAGE:-pytest-programbench/base:$SUITE}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKER="${DOCKER:-docker}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

if [[ $FORCE -eq 0 ]] && "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-offline.sh: $IMAGE already exists"
    exit 0
fi

command -v mmdebstrap >/dev/null || {
    echo "build-offline.sh: mmdebstrap is required (apt-get install -y mmdebstrap)" >&2
    exit 1
}

# What the official Evaluator and the hidden tests use inside a task container:
#   bash (it runs `bash -lc`), coreutils (sha256sum), findutils (find, xargs), tar, sed, grep,
#   gzip (it streams archives through the container's `tar -xzf`), git (it seeds a synthetic repo),
#   python3 + pytest + pytest-xdist (it sets PYTEST_ADDOPTS=--max-worker-restart=4, which needs
#   xdist) + pytest-timeout (hidden run.sh files pass --timeout), procps (ps/kill for cleanup),
#   pip (the evaluator tries `pip3 install pytest-rerunfailures`; PEP 668 makes it fail at once,
#   which it accepts), gcc/libc6-dev/make (C submissions), passwd (useradd for the `agent` user).
# minbase already has the Essential set (bash, coreutils, findutils, tar, sed, grep, gzip).
PACKAGES=(
    bash coreutils findutils tar sed grep gzip
    python3 python3-pytest python3-pytest-xdist python3-pytest-timeout python3-pip
    ca-certificates git procps passwd
    gcc libc6-dev make
)

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

# Documentation and translations are dead weight in a test image; dropping them halves the size.
mmdebstrap --variant=minbase \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "$SUITE" "$workdir/rootfs.tar" "$MIRROR"

"$DOCKER" import \
    -c 'WORKDIR /workspace' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["bash"]' \
    "$workdir/rootfs.tar" "$IMAGE"

echo "build-offline.sh: built $IMAGE"
