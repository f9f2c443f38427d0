#!/usr/bin/env bash
# Builds the EdgeNode Debian packages with dpkg-deb, one per architecture:
#   artifacts/edgenode_<version>_amd64.deb (linux-x64) and artifacts/edgenode_<version>_arm64.deb (linux-arm64).
# Each holds a self-contained ReadyToRun publish of the daemon (no .NET install needed) with the ONNX
# Runtime CPU library for its architecture under /usr/lib/edgenode, the /usr/bin/edgenode link, the systemd
# units in /lib/systemd/system, /etc/edgenode/edgenode.json as a conffile, and maintainer scripts.
# The relay (cloud-relay/EdgeNode.CloudRelay, edgenode-relay) and its unit are added when that project exists.
#
# Usage: packaging/build-deb.sh [--arch amd64|arm64|all] [--out DIR]
#   Version: <Version> in Directory.Build.props. Output: artifacts/ (gitignored) unless --out.
#   Needs: the .NET SDK, dpkg-deb (package dpkg). Runs as any user (files are owned by root in the package).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
arches=(amd64 arm64)
out="$root/artifacts"
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) [ "$2" = all ] || arches=("$2"); shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

version="$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' "$root/Directory.Build.props" | head -n 1)"
if ! [[ "$version" =~ ^[0-9][0-9A-Za-z.+~-]*$ ]]; then
    echo "build-deb.sh: no usable <Version> in Directory.Build.props (got '$version')" >&2
    exit 1
fi
relay_project="$root/cloud-relay/EdgeNode.CloudRelay/EdgeNode.CloudRelay.csproj"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

publish() { # project rid dir
    # ReadyToRun: precompiled code, so the node starts (and loads the model) sooner on slow ARM cores.
    dotnet publish "$1" -c Release -r "$2" --self-contained true -p:PublishReadyToRun=true \
        -p:DebugType=none -p:DebugSymbols=false -p:GenerateDocumentationFile=false \
        --nologo -v quiet -o "$3"
}

for arch in "${arches[@]}"; do
    case "$arch" in
        amd64) rid=linux-x64 ;;
        arm64) rid=linux-arm64 ;;
        *) echo "build-deb.sh: unsupported architecture '$arch' (amd64 or arm64)" >&2; exit 2 ;;
    esac
    echo "Building edgenode $version for $arch ($rid)..."
    stage="$work/$arch"
    lib="$stage/usr/lib/edgenode"
    publish "$root/daemon/EdgeNode.Daemon/EdgeNode.Daemon.csproj" "$rid" "$lib"
    if [ ! -f "$lib/libonnxruntime.so" ]; then
        echo "build-deb.sh: the $rid publish has no libonnxruntime.so" >&2
        exit 1
    fi

    # Runtime-pack files come as 0744; installed files are world-readable, programs world-executable.
    find "$lib" -type f -perm -u+x -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
    install -d "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/edgenode" "$stage/usr/share/doc/edgenode" "$stage/DEBIAN"
    # Relative, so that the link also works inside an unpacked tree (dpkg -x); the .NET host follows it.
    ln -s ../lib/edgenode/edgenode "$stage/usr/bin/edgenode"
    install -m 0644 "$root/packaging/systemd/edgenode.service" "$stage/lib/systemd/system/"
    if [ -f "$relay_project" ]; then
        publish "$relay_project" "$rid" "$lib/relay"
        rm -f "$lib/edgenode-relay" # the daemon references the relay (for `edgenode demo`): its publish has a copy of the apphost
        ln -s relay/edgenode-relay "$lib/edgenode-relay"
        install -m 0644 "$root/packaging/systemd/edgenode-relay.service" "$stage/lib/systemd/system/"
    fi
    install -m 0644 "$root/packaging/deb/edgenode.json" "$stage/etc/edgenode/edgenode.json"
    install -m 0644 "$root/README.md" "$root/packaging/systemd/edgenode.service.d/gpu.conf.example" "$stage/usr/share/doc/edgenode/"
    printf 'EdgeNode %s. Bundles the .NET runtime (MIT) and ONNX Runtime (MIT).\n' "$version" > "$stage/usr/share/doc/edgenode/copyright"

    size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$root/packaging/deb/control.in" > "$stage/DEBIAN/control"
    echo /etc/edgenode/edgenode.json > "$stage/DEBIAN/conffiles"
    install -m 0755 "$root/packaging/deb/postinst" "$root/packaging/deb/prerm" "$root/packaging/deb/postrm" "$stage/DEBIAN/"

    deb="$out/edgenode_${version}_${arch}.deb"
    # gzip: readable by every dpkg in use on edge boards (JetPack's Ubuntu 20.04 included), and fast to build.
    dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
    echo "$deb"
done
