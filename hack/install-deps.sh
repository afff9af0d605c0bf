#!/bin/bash
# Install the Debian packages crishim's build, `make run` and tests need;
# only the missing ones, with a single apt-get update, and only when something is missing.
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins docker-registry busybox-static
          iptables iproute2 gcc libc6-dev protobuf-compiler jq curl make ca-certificates)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $EUID -ne 0 ]]; then
  echo "missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
