#!/usr/bin/env bash
# Builds GPO's container image (k8s/Dockerfile) with podman, on a machine with no Docker and no registry:
#
#   bash scripts/image.sh [TAG [PODMAN-BUILD-ARGS...]]    # default TAG: localhost/gpo:dev; e.g. --no-cache
#
# As root, once: installs podman, runc and debootstrap when missing (apt-get), makes runc podman's runtime
# (crun refuses hybrid cgroups) and caps the containers' ulimits at or below the host's (runc fails with
# `setrlimit ... Operation not permitted` otherwise). Builds and pods use the host's network: podman's bridge
# (netavark) needs iptables, which this machine lacks. Then it builds a Debian bookworm base image with
# debootstrap (Debian's python3.11, as python:3.11-slim has) and imports it as localhost/gpo-base:bookworm.
# The rootfs tarball is cached in .tools/image/, so the base is built once per machine. The gateway is
# built on the host (scripts/build_clients.sh gateway) and copied in, so no golang image is needed.
# Prints the build time on its last line: `image: built TAG in N.N s`.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/gpo:dev}
shift $(( $# > 0 ? 1 : 0 ))
base=localhost/gpo-base:bookworm
cache=.tools/image
mkdir -p "$cache"

install_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v newuidmap >/dev/null || missing+=(uidmap)
  command -v catatonit >/dev/null || missing+=(catatonit)  # kube play builds its pause image with it
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || { echo "image: needs root to install ${missing[*]}" >&2; exit 3; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" catatonit fuse-overlayfs slirp4netns netavark aardvark-dns >/dev/null
}

configure_podman() {
  # System-wide defaults: runc, and ulimits no higher than the host's.
  local conf=/etc/containers/containers.conf.d/50-gpo.conf
  local nofile nproc
  nofile=$(ulimit -n); nproc=$(ulimit -u)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nproc" = unlimited ] && nproc=1048576
  nofile=$((nofile < 1024 ? nofile : 1024)); nproc=$((nproc < 4096 ? nproc : 4096))
  mkdir -p "$(dirname "$conf")"
  cat > "$conf" <<EOF
# Written by GPO's scripts/image.sh: crun refuses this machine's hybrid cgroups, and runc cannot raise
# limits above the host's.
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
netns = "host"  # podman's bridge (netavark) needs iptables, which this machine lacks
EOF
}

build_base() {
  podman image exists "$base" && return 0
  local tarball="$cache/bookworm-rootfs.tar"
  if [ ! -s "$tarball" ]; then
    local root="$cache/rootfs"
    rm -rf "$root"
    debootstrap --variant=minbase --include=python3.11,python3-pip,python3-venv,ca-certificates \
      bookworm "$root" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
    tar -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$root"
  fi
  # An imported image has no environment: give it PATH, and `python` as python:3.11-slim has it.
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$tarball" "$base" >/dev/null
}

install_tools
configure_podman
build_base
bash scripts/build_clients.sh gateway
mkdir -p build/image
cp .tools/build/gpo-gateway build/image/gpo-gateway

# pip inside the build trusts what the host trusts (a proxy's CA, say): the host's CA bundle and a pip.conf
# naming it are mounted for the RUN steps only, never copied into the image.
mounts=()
host_ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [ -s "$host_ca" ]; then
  printf '[global]\ncert = /run/host-ca.crt\n' > "$cache/pip.conf"
  mounts=(--volume "$(realpath "$host_ca"):/run/host-ca.crt:ro" --volume "$PWD/$cache/pip.conf:/etc/pip.conf:ro")
fi

start=$(date +%s.%N)
podman build "${mounts[@]}" --quiet --network host -f k8s/Dockerfile --ignorefile k8s/Dockerfile.dockerignore --build-arg BASE="$base" --build-arg GATEWAY=prebuilt \
  "$@" -t "$tag" . >/dev/null
end=$(date +%s.%N)
# The gateway stage's image is left dangling by each build; it is ours to remove.
podman image prune -f --filter label=gpo.dev/stage=gateway >/dev/null
printf "image: built %s in %s s\n" "$tag" "$(python3 -c "print(f\"{$end - $start:.1f}\")")"
