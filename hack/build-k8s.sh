#!/bin/bash
# Builds the Kubernetes and etcd binaries the e2e suites run (kubelet,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kube-proxy,
# etcd) from the Go module proxy, as pinned by integration/e2e/tools/go.mod, into
# a cache outside the repository keyed by that module's go.sum. A cache that
# already holds every binary is reused as it is. Prints the cache's bin path;
# the build's own output goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/../integration/e2e/tools"
export PATH=/usr/local/go/bin:$PATH

key=$(cat go.mod go.sum | sha256sum | cut -c1-12)
cache=${CRISHIM_K8S_CACHE:-/var/cache/crishim/k8s}/$key
bins=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl kube-proxy etcd)

missing=0
for b in "${bins[@]}"; do [[ -x $cache/$b ]] || missing=1; done
if [[ $missing == 0 ]]; then
  echo "$cache"
  exit 0
fi

start=$(date +%s)
echo "building the Kubernetes binaries into $cache (about 15-30 minutes on two cores)" >&2
rm -rf "$cache.tmp"
mkdir -p "$cache.tmp"
# One go build for all of them: the packages they share compile once, and
# compiling one binary's packages overlaps with linking another.
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$cache.tmp/" \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kube-proxy \
  go.etcd.io/etcd/server/v3 >&2
# go names a module-root main package after the element before /v3.
mv "$cache.tmp/server" "$cache.tmp/etcd"
rm -rf "$cache"
mv "$cache.tmp" "$cache"
echo "built the Kubernetes binaries in $(( $(date +%s) - start )) s" >&2
echo "$cache"
