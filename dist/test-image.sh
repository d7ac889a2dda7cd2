#!/usr/bin/env bash
# The container test: builds the static binaries (PROFILE=dev by default, quicker), checks
# they are static and run alone (`--version`, then a real round trip: the static ferry-server
# and the static ferry, no container), then builds the image and runs an upload and a
# download through it with podman. Where podman cannot run containers, it prints why (the
# error) and stops there with success: the static binaries were still checked.
# CONTAINER=0 skips the image; run it where containers can run: dist/test-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PROFILE=${PROFILE:-dev}
target=x86_64-unknown-linux-musl
dir=${CARGO_TARGET_DIR:-target}/$target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
ONLY_BINARIES=1 bash dist/build-image.sh
dir=$(realpath "$dir")
for binary in ferry-server ferry-certs ferry; do
    "$dir/$binary" --version
done

work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    if [ -n "${container:-}" ]; then podman rm -f "$container" >/dev/null 2>&1 || true; fi
    if [ -n "${volume:-}" ]; then podman volume rm -f "$volume" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Waits for "ferry-server listening on ADDR" in $1, prints ADDR.
listening_addr() {
    for _ in $(seq 1 100); do
        addr=$(sed -n 's/^ferry-server listening on //p' "$1" | head -1)
        [ -n "$addr" ] && { echo "$addr"; return 0; }
        sleep 0.1
    done
    echo "test-image: the server did not start:" >&2
    cat "$1" >&2
    return 1
}

echo "== round trip with the static binaries, no container"
head -c 3000000 /dev/urandom > "$work/payload.bin"
"$dir/ferry-server" --no-web --listen 127.0.0.1:0 --storage "$work/storage" --certs "$work/certs" \
    > "$work/server.out" 2> "$work/server.err" &
server_pid=$!
addr=$(listening_addr "$work/server.out")
(cd "$work" && "$dir/ferry" --server "$addr" --ca certs/ca.crt \
    --cert certs/clients/local.crt --key certs/clients/local.key roundtrip payload.bin)
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""
cmp "$work/payload.bin" "$work/storage"/*/files/payload.bin
echo "static binaries: round trip verified"

[ "${CONTAINER:-1}" = 0 ] && { echo "container: not tried (CONTAINER=0)"; exit 0; }
if ! command -v podman >/dev/null; then
    echo "container: SKIPPED: podman is not installed (Debian: apt-get install podman)"
    exit 0
fi
if ! probe=$(podman info 2>&1 >/dev/null); then
    echo "container: SKIPPED: podman cannot run here: $probe"
    exit 0
fi
tag=localhost/ferry-server:test
if ! built=$(bash dist/build-image.sh "$tag" 2>&1); then
    echo "$built" | tail -20
    echo "container: SKIPPED: the image cannot be built here (see above)"
    exit 0
fi
echo "== upload and download through the container"
volume=ferry-test-$$
container=ferry-test-$$
podman volume create "$volume" >/dev/null
if ! started=$(podman run -d --name "$container" -p 127.0.0.1::9000 -v "$volume:/data" \
        "$tag" --no-web 2>&1); then
    echo "container: SKIPPED: podman cannot run the container here: $started"
    exit 0
fi
for _ in $(seq 1 100); do
    podman logs "$container" 2>/dev/null | grep -q '^ferry-server listening on' && break
    sleep 0.1
done
podman logs "$container" | grep '^ferry-server listening on 0.0.0.0:9000'
port=$(podman port "$container" 9000/tcp | sed 's/.*://')
podman cp "$container:/data/certs" "$work/from-container"
"$dir/ferry" --server "localhost:$port" --ca "$work/from-container/ca.crt" \
    --cert "$work/from-container/clients/local.crt" --key "$work/from-container/clients/local.key" \
    upload "$work/payload.bin" --name through-container.bin
"$dir/ferry" --server "localhost:$port" --ca "$work/from-container/ca.crt" \
    --cert "$work/from-container/clients/local.crt" --key "$work/from-container/clients/local.key" \
    download through-container.bin -o "$work/back.bin"
cmp "$work/payload.bin" "$work/back.bin"
[ "$(podman exec "$container" /usr/local/bin/ferry --version | cut -d' ' -f1)" = ferry ]
echo "container: upload and download through the image verified (user $(podman inspect -f '{{.Config.User}}' "$tag"))"
