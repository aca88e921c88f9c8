#!/usr/bin/env bash
# Runs every flowhook test. Installs what the tests talk to (softflowd) when
# it is missing, then runs the whole cargo test suite. Used as is by .ci/run.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v softflowd >/dev/null 2>&1 || need+=(softflowd)
if ((${#need[@]})); then
  echo "run-tests: installing ${need[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo test --locked "$@"
