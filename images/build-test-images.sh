#!/usr/bin/env bash
# Make sure the images the test suite needs exist on the current Docker engine.
#
# The base image: from Debian's archive with mmdebstrap when it is installed (no registry
# needed, what CI does), otherwise FROM debian:bookworm-slim through an ordinary registry.
# Then the self-test task image on that base (the suite would build it itself; building it
# here lets tox's set-up remove it again when it made it), and the realistic Rust, Go and C
# task images (images/realistic, tests/realistic.py) on a trixie base made the same way,
# each under a tag carrying a hash of its build context, so an unchanged one is not rebuilt.
#
# PB_TEST_IMAGES=selftest builds only the base and self-test images (tox's py-pytestmin: the
# tests it runs use no other); the default, all, builds the realistic ones too.
#
# PB_CREATED_IMAGES=FILE appends each image this run built (tags, then untagged build
# stages by id) to FILE; images that were already there are left out, so a teardown that
# removes FILE's images never removes a developer's own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
IMAGE="${PB_TEST_BASE_IMAGE:-pytest-programbench/base:bookworm}"
created="${PB_CREATED_IMAGES:-/dev/null}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-test-images.sh: $IMAGE present"
else
    if command -v mmdebstrap >/dev/null; then
        PB_BASE_IMAGE="$IMAGE" bash "$here/base/build-offline.sh"
    else
        docker build -t "$IMAGE" -f "$here/base/Dockerfile" "$here/base"
    fi
    echo "$IMAGE" >>"$created"
fi

# The name programbench gives the self-test task (PROGRAMBENCH_DOCKER_ORG honoured), from the
# installed package; without it (this script run outside the test environment) the suite
# builds the image itself.
if selftest="$("${PYTHON:-python3}" -c 'from pytest_programbench import selftest as s
print(f"{s.image_name()}:{s.IMAGE_TAG}")' 2>/dev/null)"; then
    if docker image inspect "$selftest" >/dev/null 2>&1; then
        echo "build-test-images.sh: $selftest present"
    else
        dangling() { docker images -q --no-trunc --filter dangling=true | sort; }
        before="$(dangling)"
        docker build -q -t "$selftest" --build-arg BASE="$IMAGE" "$here/selftest" >/dev/null
        echo "build-test-images.sh: built $selftest"
        echo "$selftest" >>"$created"
        # The build's toolchain stage stays behind untagged; it is ours too.
        comm -13 <(echo "$before") <(dangling) >>"$created"
    fi
fi

if [ "${PB_TEST_IMAGES:-all}" = selftest ]; then
    echo "build-test-images.sh: PB_TEST_IMAGES=selftest: no realistic images"
    exit 0
fi

# The realistic task images: a trixie base (offline like the bookworm one), then the images
# tests/realistic.py names by the hash of their build context.
TRIXIE="${PB_TEST_TRIXIE_IMAGE:-pytest-programbench/base:trixie}"
if docker image inspect "$TRIXIE" >/dev/null 2>&1; then
    echo "build-test-images.sh: $TRIXIE present"
elif command -v mmdebstrap >/dev/null; then
    PB_BASE_SUITE=trixie PB_BASE_IMAGE="$TRIXIE" bash "$here/base/build-offline.sh"
    echo "$TRIXIE" >>"$created"
else
    echo "build-test-images.sh: no $TRIXIE and no mmdebstrap; set PB_TEST_TRIXIE_IMAGE=debian:trixie-slim" >&2
    exit 1
fi
if "${PYTHON:-python3}" -c 'import pytest_programbench, yaml' 2>/dev/null; then
    PB_TEST_TRIXIE_IMAGE="$TRIXIE" "${PYTHON:-python3}" "$here/../tests/realistic.py" build --created "$created"
fi
