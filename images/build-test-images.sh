#!/usr/bin/env bash
# Make sure the images the test suite needs exist on the current Docker engine.
#
# The base image: from Debian's archive with mmdebstrap when it is installed (no registry
# needed, what CI does), otherwise FROM debian:bookworm-slim through an ordinary registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
IMAGE="${PB_TEST_BASE_IMAGE:-pytest-programbench/base:bookworm}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-test-images.sh: $IMAGE present"
elif command -v mmdebstrap >/dev/null; then
    PB_BASE_IMAGE="$IMAGE" bash "$here/base/build-offline.sh"
else
    docker build -t "$IMAGE" -f "$here/base/Dockerfile" "$here/base"
fi
