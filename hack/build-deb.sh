#!/bin/bash
# Build the crishim Debian package with dpkg-deb alone (no debhelper).
#   hack/build-deb.sh BINARY OUTDIR [VERSION]
# BINARY is a built crishim; VERSION defaults to what `BINARY version` says.
# Prints the path of the .deb it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:?usage: build-deb.sh BINARY OUTDIR [VERSION]}
outdir=${2:?usage: build-deb.sh BINARY OUTDIR [VERSION]}
version=${3:-$("$bin" version | awk '{print $2}')}

# A release (v1.2.3, 1.2.3-4-gabc) keeps its number; anything else, such
# as a bare git hash, becomes 0.0.0+git.<it>, which sorts below every
# release. Debian versions must start with a digit.
version=${version#v}
if [[ ! $version =~ ^[0-9]+\.[0-9]+ ]]; then
  version="0.0.0+git.$version"
fi
version=${version//-/.}
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/crishim
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/crishim" "$pkg/usr/share/doc/crishim"
install -m 0755 "$bin" "$pkg/usr/bin/crishim"
install -m 0644 contrib/systemd/crishim.service contrib/systemd/crishim.socket "$pkg/lib/systemd/system/"
"$bin" config default >"$pkg/etc/crishim/config.toml"
chmod 0644 "$pkg/etc/crishim/config.toml"
install -m 0644 contrib/deb/kubelet.md "$pkg/usr/share/doc/crishim/kubelet.md"

echo /etc/crishim/config.toml >"$pkg/DEBIAN/conffiles"
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: crishim
Version: $version
Architecture: $arch
Maintainer: crishim developers <crishim@localhost>
Depends: containerd, runc, containernetworking-plugins
Recommends: iptables
Section: admin
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Homepage: https://github.com/crishim/crishim
Description: Kubernetes CRI runtime service on containerd
 crishim serves the Kubernetes Container Runtime Interface (CRI v1) on
 unix:///run/crishim/crishim.sock and runs pods on containerd, runc and CNI
 plugins. Point the kubelet at it with
 --container-runtime-endpoint=unix:///run/crishim/crishim.sock
 (see /usr/share/doc/crishim/kubelet.md).
CONTROL
install -m 0755 contrib/deb/postinst contrib/deb/prerm contrib/deb/postrm "$pkg/DEBIAN/"

mkdir -p "$outdir"
out="$outdir/crishim_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$pkg" "$out" >/dev/null
echo "$out"
