#!/usr/bin/env bash
# Builds the container image of dist/Containerfile: static x86_64-unknown-linux-musl builds
# of ferry-server, ferry-certs and ferry (aws-lc's C code needs Debian's musl-tools), then
# `podman build` (or `buildah bud`). Usage: dist/build-image.sh [TAG] (default ferry-server).
# PROFILE=dev builds unoptimised binaries (faster, for tests); ONLY_BINARIES=1 stops after them.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-ferry-server}
profile=${PROFILE:-release}
target=x86_64-unknown-linux-musl
if ! command -v musl-gcc >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --locked --profile "$profile" --target "$target" \
    -p ferry-server -p ferry-client -p ferry-certs \
    --bin ferry-server --bin ferry --bin ferry-certs
dir=${CARGO_TARGET_DIR:-target}/$target/$([ "$profile" = dev ] && echo debug || echo "$profile")
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin" "$context/data"
for binary in ferry-server ferry-certs ferry; do
    cp "$dir/$binary" "$context/bin/"
    # static: no interpreter, no shared libraries
    if readelf -l "$context/bin/$binary" | grep -q 'Requesting program interpreter'; then
        echo "build-image: $binary is not static" >&2
        exit 1
    fi
done
echo "build-image: static binaries in $dir"
[ -n "${ONLY_BINARIES:-}" ] && exit 0
if command -v podman >/dev/null; then
    podman build -f dist/Containerfile -t "$tag" "$context"
elif command -v buildah >/dev/null; then
    buildah bud -f dist/Containerfile -t "$tag" "$context"
else
    echo "build-image: neither podman nor buildah is installed (Debian: apt-get install podman)" >&2
    exit 1
fi
