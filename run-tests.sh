#!/usr/bin/env bash
# Runs every flowhook test. Installs what the tests talk to (softflowd,
# prometheus with promtool, prometheus-alertmanager with amtool, rsyslog
# with its TLS driver, openssl,
# systemd-analyze) when missing, checks formatting and lints, runs
# the whole cargo test suite, then the side-by-side smoke run
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

# hygiene first: formatting and lints are part of the suite
for c in rustfmt clippy; do
  cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$c"
done
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

cargo test --locked "$@"

# end to end against the peers: every collector accounts every record of a low-rate stream
benches/compare.sh --smoke

# the container image, built from deploy/Dockerfile with podman and run (installs podman when missing)
deploy/container-test.sh
