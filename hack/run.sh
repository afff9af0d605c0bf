#!/bin/bash
# Run crishim in the foreground on its defaults. When no containerd answers at
# CONTAINERD_ADDRESS (default /run/containerd/containerd.sock), start a
# private one (CRI plugin disabled) and point crishim at it; then run the
# preflight (`crishim check`) and serve.
# Extra arguments are passed to `crishim check` and `crishim serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

CONTAINERD_ADDRESS=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
PRIVATE_ROOT=/var/lib/crishim-containerd
PRIVATE_STATE=/run/crishim-containerd
PRIVATE_SOCK=$PRIVATE_STATE/containerd.sock

if [[ $EUID -ne 0 ]]; then
  echo "crishim runs pods: run as root" >&2
  exit 1
fi

answers() { [[ -S $1 ]] && timeout 10 ctr --connect-timeout 2s --address "$1" version >/dev/null 2>&1; }

address=$CONTAINERD_ADDRESS
if ! answers "$address"; then
  address=$PRIVATE_SOCK
  if ! answers "$address"; then
    mkdir -p "$PRIVATE_ROOT" "$PRIVATE_STATE"
    # oom_score = 0: containerd must not lower its oom_score_adj, which needs
    # CAP_SYS_RESOURCE that containers and some VMs lack.
    cat >"$PRIVATE_STATE/config.toml" <<TOML
version = 2
root = "$PRIVATE_ROOT"
state = "$PRIVATE_STATE"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
oom_score = 0
[grpc]
  address = "$PRIVATE_SOCK"
[ttrpc]
  address = "$PRIVATE_SOCK.ttrpc"
TOML
    log=/var/log/crishim-containerd.log
    echo "no containerd answers at $CONTAINERD_ADDRESS; starting one at $address (log $log)"
    nohup containerd --config "$PRIVATE_STATE/config.toml" >>"$log" 2>&1 </dev/null &
    echo $! >"$PRIVATE_STATE/containerd.pid"
    for _ in $(seq 1 100); do
      answers "$address" && break
      if ! kill -0 "$(cat "$PRIVATE_STATE/containerd.pid")" 2>/dev/null; then
        echo "containerd exited; tail of $log:" >&2
        tail -20 "$log" >&2
        exit 1
      fi
      sleep 0.1
    done
    answers "$address" || { echo "containerd did not answer at $address" >&2; exit 1; }
    echo "containerd running (pid $(cat "$PRIVATE_STATE/containerd.pid")); stop it with: kill \$(cat $PRIVATE_STATE/containerd.pid)"
  fi
fi

# The preflight runs against the containerd chosen (or started) above, with
# the same flags serve gets, so a "not reachable" here is a real failure.
echo "preflight: bin/crishim check"
if ! bin/crishim check --containerd-address "$address" "$@"; then
  echo "crishim check failed: fix the fail lines above (warn lines are advisory)" >&2
  exit 1
fi

echo "crishim serving unix:///run/crishim/crishim.sock (containerd $address)"
exec bin/crishim serve --containerd-address "$address" "$@"
