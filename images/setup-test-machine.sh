#!/usr/bin/env bash
# Make this machine ready for the test suite, and afterwards take back what that added.
# tox runs it around the suite (commands_pre / commands_post), so the README's `tox` works
# on a fresh machine; .ci/run only installs tox and runs it. No standard input is read.
#
#   setup-test-machine.sh [--dry-run] STATE_DIR
#       a Docker engine (installs docker.io and starts dockerd when `docker info` fails),
#       the tools the tests call (mmdebstrap, docker-registry, ip, podman), the user a
#       rootless Podman runs as (PB_PODMAN_USER, default pbpodman), the test images
#       (images/build-test-images.sh). STATE_DIR records the image tags present before and
#       the images this run built. --dry-run (or PB_SETUP_DRY_RUN=1) only prints what it would do.
#   setup-test-machine.sh --teardown STATE_DIR
#       lists the test tags left behind that were not there before and that the set-up did
#       not build, and fails if any. The images the set-up built stay, like the engine it
#       started: tagged by a hash of their build context, they make the next run's set-up
#       (tox's next env, a contributor's next `tox`) a check instead of a rebuild.
#       PB_SETUP_REMOVE_BUILT=1 removes them first (a developer's pre-built ones stay).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

mode=setup
dry="${PB_SETUP_DRY_RUN:-}"
case "${1:-}" in
    --teardown) mode=teardown; shift ;;
    --dry-run) dry=1; shift ;;
esac
state="${1:?usage: setup-test-machine.sh [--dry-run|--teardown] STATE_DIR}"

say() { printf 'setup-test-machine.sh: %s\n' "$*"; }
act() {  # run a command, or only print it in a dry run
    if [ -n "$dry" ]; then say "would run: $*"; else "$@"; fi
}

# Image names the suite creates (the clones of tests/support.py and tests/realistic.py, the
# base, self-test and realistic images, the pull tests' registry tags): what the leftover
# check looks at. Other sessions' images on a shared engine are not the suite's business.
SUITE_TAGS="${PB_SUITE_TAGS:-^(programbench/pbselftest_|programbench/pbreal_|pytest-programbench/|pbtest-|127\.0\.0\.1:|localhost:|programbench-compiled/)}"
suite_tags() { docker images --format '{{.Repository}}:{{.Tag}}' | grep -E "$SUITE_TAGS" | sort -u || true; }

apt_install() {
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
        say "missing: $*; install them (apt-get install -y $*) and run again" >&2
        exit 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"  # no password prompt: there is no stdin
    if [ -z "${_apt_updated:-}" ]; then act $sudo apt-get update -qq; _apt_updated=1; fi
    act $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

engine() {
    if docker info >/dev/null 2>&1; then
        docker info --format 'engine {{.ServerVersion}}, {{.NCPU}} cpus, storage {{.Driver}}'
        return
    fi
    # Started where the client looks: the default socket, or DOCKER_HOST's when it is a socket.
    local listen=()
    case "${DOCKER_HOST:-}" in
        "") ;;
        unix://*) listen=(-H "$DOCKER_HOST") ;;
        *)
            say "no Docker engine answers at $DOCKER_HOST; start it there, or unset DOCKER_HOST" >&2
            exit 1
            ;;
    esac
    say "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}: starting dockerd"
    command -v dockerd >/dev/null || apt_install docker.io
    if [ -n "$dry" ]; then
        say "would run: setsid nohup dockerd ${listen[*]} >/tmp/pb-dockerd.log 2>&1 &"
        return
    fi
    # Its own session: it outlives tox, like an engine started by hand.
    setsid nohup dockerd "${listen[@]}" >/tmp/pb-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 90); do docker info >/dev/null 2>&1 && break; sleep 1; done
    if ! docker info >/dev/null 2>&1; then
        say "dockerd did not come up; its log (/tmp/pb-dockerd.log) ends:" >&2
        tail -n 50 /tmp/pb-dockerd.log >&2
        exit 1
    fi
}

tools() {
    local missing=()
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)        # the offline base image
    command -v docker-registry >/dev/null || missing+=(docker-registry)  # the pull tests' registry
    command -v ip >/dev/null || missing+=(iproute2)  # the engine-failure tests' second bridge
    # tests/test_html.py opens --pb-html in Debian's headless chromium through selenium (dev extra).
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    # The fleet tests reach the engine over ssh:// through an sshd of their own on localhost.
    command -v sshd >/dev/null || missing+=(openssh-server)
    command -v ssh-keygen >/dev/null || missing+=(openssh-client)
    # tests/test_podman.py: Podman's Docker API, rootful and rootless. Its --init needs catatonit,
    # which Debian's podman leaves out where tini is installed; rootless needs newuidmap.
    command -v podman >/dev/null || missing+=(podman)
    command -v catatonit >/dev/null || missing+=(catatonit)
    command -v newuidmap >/dev/null || missing+=(uidmap)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

podman_user() {  # the user tests/test_podman.py runs a rootless Podman service as
    local user="${PB_PODMAN_USER:-pbpodman}" sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    if ! id "$user" >/dev/null 2>&1; then
        # useradd gives a new user its subordinate uid and gid ranges (/etc/subuid, /etc/subgid).
        act $sudo useradd --create-home --shell /usr/sbin/nologin "$user"
    elif ! grep -q "^$user:" /etc/subuid 2>/dev/null; then
        act $sudo usermod --add-subuids 300000-365535 --add-subgids 300000-365535 "$user"
    fi
}

setup() {
    if [ -z "$dry" ]; then rm -rf "$state" && mkdir -p "$state"; fi
    engine
    tools
    podman_user
    if [ -n "$dry" ]; then say "would run: images/build-test-images.sh"; return; fi
    suite_tags >"$state/tags-before"
    PB_CREATED_IMAGES="$state/created-images" bash "$here/build-test-images.sh"
}

teardown() {
    if [ ! -f "$state/tags-before" ]; then
        say "no set-up state in $state: nothing to take back"
        return
    fi
    # The file holds tags, and build stages by id: a stage has no tag and no use once its
    # image is built, so it goes; the tags stay unless PB_SETUP_REMOVE_BUILT is set.
    local built=() image
    if [ -s "$state/created-images" ]; then
        mapfile -t built < <(grep ':' "$state/created-images" || true)
        # Newest first: the self-test image before the base it was built on.
        tac "$state/created-images" | while read -r image; do
            case "$image" in *:*) [ -n "${PB_SETUP_REMOVE_BUILT:-}" ] || continue ;; esac
            docker image rm "$image" >/dev/null 2>&1 && say "removed $image (built by the set-up)" || true
        done
    fi
    if [ -n "${PB_SETUP_REMOVE_BUILT:-}" ]; then
        built=()
    elif [ ${#built[@]} -gt 0 ]; then
        say "kept the ${#built[@]} test image(s) the set-up built, for the next run (PB_SETUP_REMOVE_BUILT=1 removes them)"
    fi
    # A tag a container still uses belongs to a session still running (on a shared engine,
    # another one's scoring); it is named, not counted. This suite removes its containers.
    local used tag left=()
    used="$(docker ps -aq | xargs -r docker inspect --format '{{.Image}}' 2>/dev/null | sort -u || true)"
    for tag in $(suite_tags | comm -13 "$state/tags-before" - || true); do
        if [ ${#built[@]} -gt 0 ] && printf '%s\n' "${built[@]}" | grep -qxF "$tag"; then
            continue  # the set-up's own, kept above
        elif grep -qxF "$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null)" <<<"$used"; then
            say "in use by a container, so not the suite's leftover: $tag"
        else
            left+=("$tag")
        fi
    done
    if [ ${#left[@]} -gt 0 ]; then
        say "the suite left these image tags behind (remove them with docker image rm):" >&2
        printf '  %s\n' "${left[@]}" >&2
        exit 1
    fi
    say "no image tags left behind"
}

"$mode"
