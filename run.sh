#!/usr/bin/env bash
# Bootstrap for a fresh Debian/Ubuntu machine that may lack make: install it, then run the Makefile target.
#   ./run.sh demo    the main job          ./run.sh test    lint + tests (what CI runs)
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v make >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq make
fi
exec make --no-print-directory "${@:-demo}"
