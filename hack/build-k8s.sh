#!/bin/bash
# Builds the Kubernetes and etcd binaries the e2e suites run (kubelet,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kube-proxy,
# etcd) from the Go module proxy, as pinned by integration/e2e/tools/go.mod, into
# a cache outside the repository keyed by that module's go.sum. A cache that
# already holds every binary is reused as it is. Prints the cache's bin path.
set -euo pipefail
cd "$(dirname "$0")/../integration/e2e/tools"
export PATH=/usr/local/go/bin:$PATH

key=$(cat go.mod go.sum | sha256sum | cut -c1-12)
cache=${CRISHIM_K8S_CACHE:-/var/cache/crishim/k8s}/$key
bins=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl kube-proxy etcd)

have=1
for b in "${bins[@]}"; do [[ -x $cache/$b ]] || have=0; done
if [[ $have == 1 ]]; then echo "$cache"; exit 0; fi

mkdir -p "$cache.tmp"
start=$(date +%s)
# Two cores: one package graph at a time, all of its compile jobs in parallel.
build() { # name package
  [[ -x $cache.tmp/$1 ]] && return 0
  echo "building $1 ($2)" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$cache.tmp/$1" "$2" >&2
}
build kubelet k8s.io/kubernetes/cmd/kubelet
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubectl k8s.io/kubernetes/cmd/kubectl
build kube-proxy k8s.io/kubernetes/cmd/kube-proxy
build etcd go.etcd.io/etcd/server/v3
rm -rf "$cache"
mv "$cache.tmp" "$cache"
echo "built Kubernetes binaries in $(( $(date +%s) - start )) s" >&2
echo "$cache"
