#!/usr/bin/env bash
# Build the Dockerfile for real with podman (no Docker engine needed) and smoke-test the image:
# its entry point serves the chat page on loopback, its HEALTHCHECK passes, and one question
# through the /ask API is answered from the Diplomat article. `make image-smoke` runs it.
#
#   deploy/podman-smoke.sh            base image if missing, build, smoke test
#   deploy/podman-smoke.sh base       only the local base image
#   deploy/podman-smoke.sh build      base if missing, then the build
#   deploy/podman-smoke.sh smoke      only the smoke test of the image built before
#
# Needs root (podman, chroot, mount). Works where `podman run` cannot (no cgroup or rlimit
# permissions, no registry): the base image is Debian bookworm from debootstrap (its python3 is
# 3.11) imported into podman, and the image's CMD runs in a chroot of a mounted container.
# Anything specific to this machine is on the podman command line here, never in the Dockerfile:
# pip inside the build sees the host's pip configuration (find-links, local indexes, constraints,
# CA bundle) through read-only bind mounts, and torch comes from there (TORCH_INDEX_URL="").
#
# Settings (environment): IMAGE (localhost/rag:smoke), BASE_IMAGE (localhost/rag-base:bookworm),
# DEBIAN_MIRROR (http://deb.debian.org/debian), PAGE_TIMEOUT seconds (300),
# HOST_PIP (the pip whose configuration the build uses: .venv/bin/pip, else python3 -m pip),
# CLIENT_PYTHON (the Python with gradio_client that asks the question: .venv/bin/python),
# LOG_DIR (where debootstrap.log, build.log and app.log stay: /tmp/rag-image-smoke).
set -euo pipefail

step=${1:-all}
case "$step" in all | base | build | smoke) ;; *) echo "usage: $0 [all|base|build|smoke]" >&2; exit 2 ;; esac

IMAGE=${IMAGE:-localhost/rag:smoke}
BASE_IMAGE=${BASE_IMAGE:-localhost/rag-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PAGE_TIMEOUT=${PAGE_TIMEOUT:-300}
REPO=$(cd "$(dirname "$0")/.." && pwd)
CLIENT_PYTHON=${CLIENT_PYTHON:-$REPO/.venv/bin/python}
LOG_DIR=${LOG_DIR:-/tmp/rag-image-smoke}
QUESTION="What policy does the author call an immense failure?"
EXPECTED_SOURCE="the-diplomat-2016-why-should-the-us-talk-to-north-korea.md"

say() { printf '[image-smoke] %s\n' "$*"; }
fail() { printf '[image-smoke] FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || fail "run as root (podman build, chroot and mount need it)"
cd "$REPO"

# -- tools ----------------------------------------------------------------------------------
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
    then fail "apt-get install ${missing[*]}"; fi
fi
podman_() { podman --cgroup-manager=cgroupfs "$@"; }

work=$(mktemp -d /tmp/image-smoke.XXXXXX)
mkdir -p "$LOG_DIR"
app_pid="" container="" mnt="" mounted=()
cleanup() {
    local rc=$?
    if [ -n "$app_pid" ] && kill -0 "$app_pid" 2>/dev/null; then
        kill -TERM -- "-$app_pid" 2>/dev/null || true
        for _ in $(seq 20); do kill -0 "$app_pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$app_pid" 2>/dev/null || true
    fi
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -R "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null \
            || echo "[image-smoke] could not unmount ${mounted[i]}" >&2
    done
    if [ -n "$container" ]; then
        podman_ umount "$container" >/dev/null 2>&1 || true
        podman_ rm -f "$container" >/dev/null 2>&1 || true
    fi
    # Only our own temporary folder, and only once nothing is mounted below it.
    if ! grep -q " $work/" /proc/mounts; then rm -rf "$work"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- (a) the base image: Debian bookworm's Python 3.11, like python:3.11-slim -----------------
if [ "$step" = smoke ]; then
    :
elif podman_ image exists "$BASE_IMAGE"; then
    say "base image $BASE_IMAGE exists"
else
    t0=$(now)
    say "debootstrap bookworm from $DEBIAN_MIRROR"
    # passwd: useradd for the runtime stage; python-is-python3: a `python` command.
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
        bookworm "$work/rootfs" "$DEBIAN_MIRROR" >"$LOG_DIR/debootstrap.log" 2>&1 \
        || { tail -20 "$LOG_DIR/debootstrap.log" >&2; fail "debootstrap"; }
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    # The environment python:3.11-slim sets; without a PATH the Dockerfile's PATH=/opt/venv/bin:$PATH
    # would lose /usr/sbin (useradd).
    tar -C "$work/rootfs" -c . | podman_ import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null || fail "podman import"
    rm -rf "$work/rootfs"
    say "base image $BASE_IMAGE made in $(since "$t0") s"
fi
[ "$step" = base ] && exit 0

# -- (b) the build ----------------------------------------------------------------------------
build_s="(not built now)"
if [ "$step" != smoke ]; then
    # pip's configuration on this machine (files and PIP_* variables), merged into one pip.conf for
    # the build, and every local folder or file it names bind-mounted read-only at the same path.
    if [ -n "${HOST_PIP:-}" ]; then read -r -a host_pip <<<"$HOST_PIP"
    elif [ -x "$REPO/.venv/bin/pip" ]; then host_pip=("$REPO/.venv/bin/pip")
    else host_pip=(python3 -m pip); fi
    mounts=()
    {
        echo "[global]"
        "${host_pip[@]}" config list 2>/dev/null | sed -n "s/^[^.]*\.\([a-z-]*\)='\(.*\)'\$/\1 = \2/p" \
            | awk -F' = ' '{ value[$1] = $0; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
                           END { for (i = 1; i <= n; i++) print value[order[i]] }'
    } >"$work/pip.conf"
    # shellcheck disable=SC2013 # words: extra-index-url holds several
    for word in $(sed -n 's/^[a-z-]* = //p' "$work/pip.conf"); do
        case "$word" in
        # A local index (file:///opt/pypi/simple): its pages link to files beside it (../../files).
        file:///*) path=$(dirname "${word#file://}") ;;
        /*) path=$word ;;
        *) continue ;;
        esac
        [ -e "$path" ] && mounts+=(--volume "$path:$path:ro")
    done
    mounts+=(--volume "$work/pip.conf:/etc/pip.conf:ro")
    say "pip configuration for the build: $(grep -v '^\[' "$work/pip.conf" | tr '\n' ';')"

    previous=$(podman_ image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
    t0=$(now)
    say "podman build -t $IMAGE (log: $LOG_DIR/build.log)"
    # --format docker: the OCI image format has no HEALTHCHECK (podman drops it with a warning).
    if ! podman_ build --isolation=chroot --network=host --format docker \
        --build-arg BASE="$BASE_IMAGE" --build-arg TORCH_INDEX_URL= \
        "${mounts[@]}" -t "$IMAGE" . >"$LOG_DIR/build.log" 2>&1; then
        tail -40 "$LOG_DIR/build.log" >&2
        fail "podman build"
    fi
    build_s="$(since "$t0") s"
    # The image this build replaced, if nothing else names it now (its layers stay if shared).
    if [ -n "$previous" ] && [ "$previous" != "$(podman_ image inspect --format '{{.Id}}' "$IMAGE")" ] \
        && [ -z "$(podman_ image inspect --format '{{.RepoTags}}' "$previous" | tr -d '[]')" ]; then
        podman_ rmi "$previous" >/dev/null 2>&1 || true
    fi
    grep -E '^WARN\[|level=warn' "$LOG_DIR/build.log" | sed 's/^/[image-smoke] podman: /' || true
fi
podman_ image exists "$IMAGE" || fail "no image $IMAGE"
size=$(podman_ image inspect --format '{{.Size}}' "$IMAGE")
say "$IMAGE: built in $build_s; image size $((size / 1000000)) MB ($size bytes)"
[ "$step" = build ] && exit 0

# -- (c) start the image's CMD in a chroot of a container's root, as the image's user ---------
inspect() { podman_ image inspect --format "$1" "$IMAGE"; }
user=$(inspect '{{.Config.User}}')
workdir=$(inspect '{{.Config.WorkingDir}}')
mapfile -t image_env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t cmd < <(inspect '{{range .Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t health < <(inspect '{{if .Config.Healthcheck}}{{range .Config.Healthcheck.Test}}{{println .}}{{end}}{{end}}' \
    | sed '/^$/d')
[ ${#cmd[@]} -gt 0 ] || fail "the image has no CMD"
[ "${health[0]:-}" = CMD ] || fail "the image has no exec-form HEALTHCHECK (got: ${health[*]:-none})"
health=("${health[@]:1}")
case "${user%%:*}" in "" | 0 | root) fail "the image runs as root (USER '$user')" ;; esac

container=$(podman_ create "$IMAGE") || fail "podman create"
mnt=$(podman_ mount "$container") || fail "podman mount"
# What a container gets from its engine: /proc, a read-only /sys and the devices.
mount -t proc proc "$mnt/proc" || fail "mount /proc"
mounted+=("$mnt/proc")
mount -t sysfs -o ro sysfs "$mnt/sys" || fail "mount /sys"
mounted+=("$mnt/sys")
mount --rbind /dev "$mnt/dev" || fail "mount /dev"
mounted+=("$mnt/dev")
mount --make-rslave "$mnt/dev" || fail "mount --make-rslave /dev"
# USER uid:gid must be a user and its own group in the image (files are chowned by name).
uid=${user%%:*} gid=${user#*:}
entry=$(awk -F: -v u="$uid" '$3 == u || $1 == u' "$mnt/etc/passwd")
[ -n "$entry" ] || fail "USER $user: no such user in the image's /etc/passwd"
home=$(cut -d: -f6 <<<"$entry")
if [ "$gid" != "$user" ]; then
    awk -F: -v g="$gid" '$3 == g || $1 == g { found = 1 } END { exit !found }' "$mnt/etc/group" \
        || fail "USER $user: no group $gid in the image's /etc/group"
    [ "$(cut -d: -f4 <<<"$entry")" = "$(awk -F: -v g="$gid" '$3 == g || $1 == g { print $3 }' "$mnt/etc/group")" ] \
        || fail "USER $user: group $gid is not the user's group ($entry)"
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The image's ENV, except that the chat listens on loopback only (this is the host's network:
# RAG_HOST=0.0.0.0 would open the port on every interface) and on a free port.
run_env=(HOME="${home:-/}" HOSTNAME=image-smoke "${image_env[@]}" RAG_HOST=127.0.0.1 RAG_PORT="$port")
# What the engine would do: the image's user, environment and working folder, then the command.
# shellcheck disable=SC2016 # expanded by the sh in the image
in_image=(chroot --userspec="$user" "$mnt" /usr/bin/env -i "${run_env[@]}"
    sh -c 'cd "$1" && shift && exec "$@"' sh "$workdir")

say "starting ${cmd[*]} in $workdir as $user on 127.0.0.1:$port"
t0=$(now)
# Its own session, so stopping it stops everything it started.
setsid "${in_image[@]}" "${cmd[@]}" >"$LOG_DIR/app.log" 2>&1 &
app_pid=$!
page=""
deadline=$(($(date +%s) + PAGE_TIMEOUT))
while [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$app_pid" 2>/dev/null; do
    if page=$(python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
        "http://127.0.0.1:$port/" 2>/dev/null); then
        break
    fi
    page=""
    sleep 1
done
first_page_s=$(since "$t0")
show_log() { echo "---- app log (last 40 lines) ----" >&2; tail -40 "$LOG_DIR/app.log" >&2; }
[ -n "$page" ] || { show_log; fail "no page on 127.0.0.1:$port within $PAGE_TIMEOUT s"; }
say "first page after $first_page_s s"
printf '%s' "$page" >"$LOG_DIR/page.html"
grep -qi gradio <<<"$page" || { show_log; fail "the page is not the Gradio app (see $LOG_DIR/page.html)"; }
say "page: $(grep -o '"title":"[^"]*"' <<<"$page" | head -1)"
if grep -qE "ingesting|Not ready" "$LOG_DIR/app.log"; then show_log; fail "the app re-indexed instead of serving the baked-in index"; fi

rc=0; "${in_image[@]}" "${health[@]}" || rc=$?
[ "$rc" = 0 ] || { show_log; fail "HEALTHCHECK ${health[*]} exited $rc"; }
say "HEALTHCHECK ${health[*]}: exit 0"

if [ -x "$CLIENT_PYTHON" ] && "$CLIENT_PYTHON" -c "import gradio_client" 2>/dev/null; then
    t1=$(now)
    "$CLIENT_PYTHON" - "http://127.0.0.1:$port/" "$QUESTION" "$EXPECTED_SOURCE" <<'EOF' || { show_log; fail "the /ask answer"; }
import sys
from gradio_client import Client

url, question, source = sys.argv[1:]
result = Client(url, verbose=False).predict(question=question, api_name="/ask")
cited = [c["source"] for c in result["citations"]]
print("[image-smoke] answer:", result["answer"][:200].replace("\n", " "))
print("[image-smoke] cited:", ", ".join(dict.fromkeys(cited)) or "nothing")
if result["refused"] or source not in cited:
    sys.exit(f"expected an answer citing {source}")
EOF
    say "/ask answered in $(since "$t1") s"
else
    say "skipping the /ask question: no gradio_client in $CLIENT_PYTHON"
fi

t1=$(now)
kill -TERM -- "-$app_pid"
for _ in $(seq 100); do kill -0 "$app_pid" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$app_pid" 2>/dev/null; then fail "the app did not stop within 20 s of SIGTERM"; fi
app_pid=""
say "stopped by SIGTERM in $(since "$t1") s"
if "${in_image[@]}" "${health[@]}"; then fail "HEALTHCHECK passed with the app stopped"; fi
say "HEALTHCHECK with the app stopped: exit 1"
say "OK: $IMAGE built in $build_s, $((size / 1000000)) MB, first page after $first_page_s s"
