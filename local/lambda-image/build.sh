#!/usr/bin/env bash
# The images `make sam-invoke` runs, built on this machine without any image registry:
#
#   public.ecr.aws/lambda/python:3.13-x86_64   Debian trixie (Python 3.13) + awslambdaric + a Lambda
#       bootstrap: what SAM CLI takes as the python3.13 base image (`sam local invoke --skip-pull-image`).
#   fapiao-hub/hub-tools:local                 the same root + moto[server] + the repository's sandbox/
#       (moto and the channel simulators as containers on the tier's docker network).
#
# Each image is labelled with a stamp (a hash of its inputs) and rebuilt only when it is missing or
# its stamp changed; otherwise this script only checks and exits. On the way it installs docker.io
# and debootstrap (apt-get, as root) when they are missing and starts dockerd when it is not running.
# Nothing is ever pulled. Machines with a registry do not need this (README, "sam local invoke").
#
# Environment: DEBIAN_MIRROR (default: the machine's apt sources), DEBIAN_SUITE (trixie),
# PYTHON (a Python 3.13 with pip, to fetch wheels; default .venv/bin/python).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root_dir="$(cd "$here/../.." && pwd)"
LAMBDA_IMAGE="public.ecr.aws/lambda/python:3.13-x86_64"
TOOLS_IMAGE="fapiao-hub/hub-tools:local"
STAMP_LABEL="org.fapiao-hub.stamp"
SUITE="${DEBIAN_SUITE:-trixie}"
PYTHON="${PYTHON:-$root_dir/.venv/bin/python}"
DOCKERD_LOG="/var/log/fapiao-hub-dockerd.log"

say() { echo "lambda-image: $*" >&2; }
die() { echo "lambda-image: error: $*" >&2; exit 1; }

# ------------------------------------------------------------------ docker

apt_install() {
  [ "$(id -u)" = 0 ] || die "$* missing; install it (apt-get install $*) or run as root"
  command -v apt-get >/dev/null 2>&1 || die "$* missing and there is no apt-get; install it"
  say "installing $* (apt-get)"
  local log
  log="$(mktemp)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
    >"$log" 2>&1 || { tail -n 30 "$log" >&2; rm -f "$log"; die "apt-get install $* failed"; }
  rm -f "$log"
}

ensure_docker() {
  if ! command -v docker >/dev/null 2>&1 || { ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; }; then
    apt_install docker.io
  fi
  docker info >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || die "the docker daemon is not running (and only root may start it here)"
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  say "starting dockerd (log: $DOCKERD_LOG)"
  # Its own session: it outlives this script and serves later runs.
  setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  die "dockerd did not answer within 60 s"
}

image_stamp() {  # the stamp label of an image, empty when the image is missing
  docker image inspect -f "{{ index .Config.Labels \"$STAMP_LABEL\" }}" "$1" 2>/dev/null || true
}

hash_files() {
  (cd "$root_dir" && sha256sum "$@") | sha256sum | cut -c1-16
}

# ------------------------------------------------------------------ wheels (fetched on the host)

fetch_wheels() {  # requirements file, target directory: wheels for CPython 3.13 on Linux x86_64
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null \
    || die "$PYTHON is not a Python 3.13 (run 'make' once to create .venv, or set PYTHON)"
  # Through the host's pip configuration (its index or mirror); its chatter only when it fails.
  "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --prefer-binary -w "$2" -r "$1" >"$2.log" 2>&1 \
    || { tail -n 30 "$2.log" >&2; die "could not fetch the wheels of $1"; }
}

# ------------------------------------------------------------------ the base image

debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' | grep -v -e security -e '^cdrom' | grep '/debian/\?$' | head -n1)"
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; break } }' /etc/apt/sources.list \
      | grep -v security | grep '/debian/\?$' | head -n1)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
  local stamp="$1" work="$2" mirror rootfs
  [ "$(id -u)" = 0 ] || die "building $LAMBDA_IMAGE needs root (debootstrap, chroot)"
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  mirror="$(debian_mirror)"
  rootfs="$work/rootfs"
  say "building $LAMBDA_IMAGE: debootstrap $SUITE from $mirror (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates "$SUITE" "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  fetch_wheels "$here/lambda-requirements.txt" "$rootfs/tmp/wheels"
  cp "$here/lambda-requirements.txt" "$rootfs/tmp/requirements.txt"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    python3 -m pip install --quiet --no-index --find-links /tmp/wheels --break-system-packages \
    --root-user-action=ignore --no-warn-script-location -r /tmp/requirements.txt \
    || die "pip install of the runtime interface client failed in the image root"
  install -D -m 0755 "$here/bootstrap" "$rootfs/var/runtime/bootstrap"
  mkdir -p "$rootfs/var/task" "$rootfs/opt" "$rootfs/var/lang/bin"
  ln -sf /usr/bin/python3 "$rootfs/var/lang/bin/python3.13"
  ln -sf /usr/bin/python3 "$rootfs/var/lang/bin/python3"
  rm -rf "$rootfs/tmp/"* "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* \
    "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/locale"
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime LANG=C.UTF-8 PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin' \
    -c 'WORKDIR /var/task' \
    -c "LABEL $STAMP_LABEL=$stamp" \
    - "$LAMBDA_IMAGE" >/dev/null || die "docker import failed"
  say "built $LAMBDA_IMAGE ($stamp)"
}

# ------------------------------------------------------------------ the hub-tools image

build_tools() {
  local stamp="$1" work="$2" context="$2/hub-tools"
  say "building $TOOLS_IMAGE"
  mkdir -p "$context/app/local"
  fetch_wheels "$here/hub-tools-requirements.txt" "$context/wheels"
  cp "$here/hub-tools-requirements.txt" "$context/requirements.txt"
  cp -R "$root_dir/sandbox" "$context/app/sandbox"
  find "$context/app" -name '__pycache__' -type d -prune -exec rm -rf {} +
  cp "$root_dir/local/atomic_moto.py" "$context/app/local/atomic_moto.py"
  : >"$context/app/local/__init__.py"
  cp "$here/hub_tools.py" "$context/app/hub_tools.py"
  cat >"$context/Dockerfile" <<EOF
FROM $LAMBDA_IMAGE
COPY requirements.txt /tmp/requirements.txt
COPY wheels /tmp/wheels
RUN python3 -m pip install --quiet --no-index --find-links /tmp/wheels --break-system-packages \\
      --root-user-action=ignore --no-warn-script-location -r /tmp/requirements.txt && rm -rf /tmp/wheels
COPY app /opt/hub-tools
ENV PYTHONPATH=/opt/hub-tools PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/hub-tools
ENTRYPOINT ["python3", "-m", "hub_tools"]
EOF
  # The classic builder: no BuildKit/buildx needed; the base image is local, nothing is pulled.
  DOCKER_BUILDKIT=0 docker build --quiet --label "$STAMP_LABEL=$stamp" -t "$TOOLS_IMAGE" "$context" \
    >"$work/tools-build.log" 2>&1 || { tail -n 30 "$work/tools-build.log" >&2; die "docker build of $TOOLS_IMAGE failed"; }
  say "built $TOOLS_IMAGE ($stamp)"
}

# ------------------------------------------------------------------ main

ensure_docker

base_stamp="$(hash_files local/lambda-image/build.sh local/lambda-image/bootstrap local/lambda-image/lambda-requirements.txt)-$SUITE"
tools_inputs=(local/lambda-image/hub_tools.py local/lambda-image/hub-tools-requirements.txt local/atomic_moto.py)
while IFS= read -r file; do tools_inputs+=("$file"); done < <(cd "$root_dir" && find sandbox -name '*.py' | sort)
tools_stamp="$(hash_files "${tools_inputs[@]}")-$base_stamp"

work=""
cleanup() {
  [ -n "$work" ] || return 0
  # debootstrap unmounts what it mounted; should it have left something, never recurse into it.
  { grep -o " $work/[^ ]*" /proc/mounts 2>/dev/null || true; } | sort -r | while read -r mnt; do umount -l "$mnt" || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

if [ "$(image_stamp "$LAMBDA_IMAGE")" != "$base_stamp" ]; then
  work="$(mktemp -d "${TMPDIR:-/var/tmp}/fapiao-hub-image.XXXXXX")"
  build_base "$base_stamp" "$work"
fi
if [ "$(image_stamp "$TOOLS_IMAGE")" != "$tools_stamp" ]; then
  [ -n "$work" ] || work="$(mktemp -d "${TMPDIR:-/var/tmp}/fapiao-hub-image.XXXXXX")"
  build_tools "$tools_stamp" "$work"
fi
# Replaced images leave untagged ones behind: remove those that were ours.
docker image prune -f --filter "label=$STAMP_LABEL" >/dev/null 2>&1 || true
say "images ready: $LAMBDA_IMAGE, $TOOLS_IMAGE"
