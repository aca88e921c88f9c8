#!/usr/bin/env bash
# Runs every flowhook test. Installs what the tests talk to (softflowd,
# prometheus with promtool, prometheus-alertmanager with amtool, rsyslog
# with its TLS driver, openssl, systemd-analyze, protoc, a Kafka-protocol
# broker (tansu, built once into the cargo bin directory) and an independent
# Kafka consumer (confluent-kafka from PyPI, in ~/.cache/flowhook-test/venv))
# and what the Kafka sink builds with (cmake, a C++ compiler, pkg-config,
# libssl-dev) when missing, checks formatting and lints (with and without
# the `kafka` feature), runs the whole cargo test suite with it, then the
# side-by-side smoke run
# (benches/compare.sh --smoke, which installs nfdump and pmacct), then the
# container image test (deploy/container-test.sh, which installs podman).
# Used as is by .ci/run.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v softflowd >/dev/null 2>&1 || need+=(softflowd)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
{ command -v prometheus-alertmanager && command -v amtool; } >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v rsyslogd >/dev/null 2>&1 || [[ -x /usr/sbin/rsyslogd ]] || need+=(rsyslog)
dpkg -s rsyslog-gnutls >/dev/null 2>&1 || need+=(rsyslog-gnutls)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# the Kafka sink's librdkafka is built from source
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if ((${#need[@]})); then
  echo "run-tests: installing ${need[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # the packages' services are not ours to run
  $SUDO pkill -x softflowd 2>/dev/null || true
  $SUDO pkill -x prometheus 2>/dev/null || true
  $SUDO pkill -x prometheus-alertmanager 2>/dev/null || true
fi

# the Kafka tests' broker (built once, reused) and their independent consumer
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
if ! command -v tansu >/dev/null 2>&1 && [[ ! -x $CARGO_BIN/tansu ]]; then
  echo "run-tests: installing tansu (a Kafka-protocol broker) with cargo, once: 10-15 minutes"
  cargo install --quiet --locked tansu --version 0.6.0 --features dynostore
fi
VENV=$HOME/.cache/flowhook-test/venv
if ! "$VENV/bin/python" -c 'import confluent_kafka' >/dev/null 2>&1; then
  echo "run-tests: installing confluent-kafka (the tests' Kafka consumer) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q confluent-kafka==2.6.1
fi

# hygiene first: formatting and lints are part of the suite
for c in rustfmt clippy; do
  cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$c"
done
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --all-targets --features kafka -- -D warnings

cargo test --locked --features kafka "$@"

# end to end against the peers: every collector accounts every record of a low-rate stream
benches/compare.sh --smoke

# the container image, built from deploy/Dockerfile with podman and run (installs podman when missing)
deploy/container-test.sh
