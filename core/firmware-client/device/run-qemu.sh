#!/usr/bin/env bash
# Runs the device image on an emulated Cortex-M4 (qemu-system-arm -M mps2-an386)
# against the real ferry-server, and checks what the device reports.
#
# For each case: fresh certificates (ferry-certs), a ferry-server with small TLS
# records on an ephemeral port, the device's identity, CA and server pin
# provisioned into a copy of the image (provision.py), a fresh 32-byte seed
# placed in RAM (-device loader), and QEMU with UART0 on the server's port
# (-serial tcp) and UART1 as the device's report. Cases:
#   resume    round trip verified, then the board is reset (QEMU monitor
#             system_reset) mid-download; after the reset the download resumes
#             from the held chunks and the staged file's SHA-256 matches
#   wrong-pin the device is provisioned with another key's pin: it must report
#             the pin failure
#   revoked   the device's certificate is revoked before the server starts: it
#             must report the refusal
#   vanish    the server is killed mid-download: the device must report it
# Every case must end with the device's own verdict (semihosting exit) within
# FERRY_QEMU_TIMEOUT seconds (default 120); this script stops every process it
# started. Exits 0 only if every case ends as expected.
#
# usage: run-qemu.sh [CASE...]     (default: all four)
# Needs: qemu-system-arm, openssl, python3, cargo; CARGO_TARGET_DIR is honoured,
# and FERRY_SERVER_PROFILE (release, or debug to reuse a test build).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
TIMEOUT="${FERRY_QEMU_TIMEOUT:-120}"
SEED_ADDR=0x20140000 # board/mps2_an386.rs: SEED
UPDATE_SIZE=$((100 * 1024))
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(resume wrong-pin revoked vanish)

for tool in qemu-system-arm openssl python3; do
    command -v "$tool" >/dev/null || { echo "run-qemu.sh: $tool is missing" >&2; exit 1; }
done

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

echo "=== build: the device image for mps2-an386, ferry-server, ferry-certs"
bash "$here/build.sh" mps2-an386 | tee "$work/sizes.txt"
ELF="$here/target/mps2-an386-device.elf"
# FERRY_SERVER_PROFILE=debug reuses the test build (CI); the default is release.
profile="${FERRY_SERVER_PROFILE:-release}"
profile_flag=(--release)
[ "$profile" = release ] || profile_flag=()
(cd "$root" && nice -n 10 cargo build "${profile_flag[@]}" -q -p ferry-server -p ferry-certs)
bin="${CARGO_TARGET_DIR:-$root/target}/$profile"

certs="$work/certs"
storage="$work/storage"
"$bin/ferry-certs" --certs "$certs" init >/dev/null
"$bin/ferry-certs" --certs "$certs" client device >/dev/null
"$bin/ferry-certs" --certs "$certs" client revoked-device >/dev/null
"$bin/ferry-certs" --certs "$certs" revoke revoked-device >/dev/null
spki_sha256() { openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der | sha256sum | cut -c1-64; }
pin="$(spki_sha256 "$certs/server.crt")"
# The server keeps a client's files under storage/<client name>/files/.
update_dir="$storage/device/files"
mkdir -p "$update_dir"
head -c "$UPDATE_SIZE" /dev/urandom >"$update_dir/update.bin"
update_sha="$(sha256sum "$update_dir/update.bin" | cut -c1-64)"

server_pid=""
start_server() {
    "$bin/ferry-server" --listen 127.0.0.1:0 --no-web --certs "$certs" --storage "$storage" \
        --max-fragment-size 1024 >"$work/server.out" 2>"$work/server.log" &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 100); do
        port="$(sed -n 's/^ferry-server listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/server.out")"
        [ -n "$port" ] && return 0
        sleep 0.1
    done
    echo "run-qemu.sh: ferry-server did not start" >&2
    cat "$work/server.log" >&2
    return 1
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }

monitor() { # an HMP command to the running QEMU
    python3 - "$work/monitor.sock" "$1" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
time.sleep(0.2)
s.close()
PY
}

# run_device NAME CLIENT PIN ACTION_ON_PROGRESS: boots QEMU, waits for its exit
# (at most TIMEOUT s); on the first download progress line runs ACTION once.
run_device() {
    local name="$1" client="$2" device_pin="$3" action="$4"
    local report="$work/$name.report" image="$work/$name.elf" seed="$work/$name.seed"
    python3 "$here/provision.py" "$ELF" "$image" --cert "$certs/clients/$client.crt" \
        --key "$certs/clients/$client.key" --ca "$certs/ca.crt" --server-name localhost --pin "$device_pin"
    head -c 32 /dev/urandom >"$seed"
    : >"$report"
    local started=$SECONDS
    qemu-system-arm -M mps2-an386 -display none -kernel "$image" \
        -chardev socket,id=link,host=127.0.0.1,port="$port",reconnect=1 -serial chardev:link \
        -serial file:"$report" -monitor unix:"$work/monitor.sock",server=on,wait=off \
        -device loader,file="$seed",addr="$SEED_ADDR" \
        -semihosting-config enable=on,target=native 2>"$work/$name.qemu.log" &
    local qemu=$!
    pids+=("$qemu")
    local acted=""
    while kill -0 "$qemu" 2>/dev/null; do
        if [ -z "$acted" ] && [ -n "$action" ] && grep -q '^progress' "$report"; then
            acted=1
            $action
        fi
        if [ $((SECONDS - started)) -ge "$TIMEOUT" ]; then
            echo "run-qemu.sh: $name: no verdict from the device within ${TIMEOUT}s" >&2
            kill "$qemu"
            break
        fi
        sleep 0.05
    done
    status=0
    wait "$qemu" || status=$?
    elapsed=$((SECONDS - started))
    sed "s/^/  [$name] /" "$report"
    echo "  [$name] QEMU exit status $status after ${elapsed}s"
}

reset_board() { monitor system_reset; echo "  [runner] system_reset sent mid-download"; }
kill_server() { kill -9 "$server_pid"; echo "  [runner] ferry-server killed mid-download"; }

failed=0
expect() { # CASE DESCRIPTION COMMAND...: records a failed expectation
    local case="$1" what="$2"
    shift 2
    if "$@"; then echo "  ok: $what"; else echo "  NOT OK: $what"; failed=1; fi
}
reported() { grep -qE "$2" "$work/$1.report"; }

for case in "${cases[@]}"; do
    echo "=== case $case"
    start_server
    case "$case" in
    resume)
        run_device resume device "$pin" reset_board
        expect resume "the device passed (exit 0)" test "$status" -eq 0
        expect resume "round trip verified" reported resume '^roundtrip verified'
        expect resume "the board was reset mid-download and booted again" reported resume '^boot 2 '
        expect resume "the download resumed from held chunks" \
            reported resume '^download verified: [0-9]+ B, chunks held [1-9][0-9]* stored [1-9]'
        expect resume "the staged file is update.bin (SHA-256)" reported resume "^staged sha256 $update_sha\$"
        ;;
    wrong-pin)
        run_device wrong-pin device "$(echo other | sha256sum | cut -c1-64)" ""
        expect wrong-pin "the device failed (exit 1)" test "$status" -eq 1
        expect wrong-pin "it reports the pin" reported wrong-pin "^FAIL: the server's key is not the pinned one"
        ;;
    revoked)
        run_device revoked revoked-device "$pin" ""
        expect revoked "the device failed (exit 1)" test "$status" -eq 1
        expect revoked "it reports the refusal" reported revoked '^FAIL: the server refused the session'
        expect revoked "the server refused it as revoked" grep -qi revoked "$work/server.log"
        ;;
    vanish)
        run_device vanish device "$pin" kill_server
        expect vanish "the device failed (exit 1)" test "$status" -eq 1
        expect vanish "it reports the lost server" reported vanish '^FAIL: (no answer|the stream ended|transport)'
        ;;
    *)
        echo "run-qemu.sh: unknown case $case" >&2
        exit 2
        ;;
    esac
    stop_server
done

if [ -f "$work/resume.report" ]; then
    flash="$(awk '/^ferry-firmware-device/ { d = 1 } /^ferry-firmware-check/ { d = 0 } d && /^  flash \(/ { print $(NF - 1) }' "$work/sizes.txt")"
    static_ram="$(awk '/^ferry-firmware-device/ { d = 1 } /^ferry-firmware-check/ { d = 0 } d && /^  RAM, static/ { print $(NF - 1) }' "$work/sizes.txt")"
    peak="$(sed -n 's/^peak stack \([0-9]*\) B.*/\1/p' "$work/resume.report" | sort -n | tail -n 1)"
    echo "=== figures: ferry-firmware-device on mps2-an386 (the resume case)"
    echo "  flash $flash B, static RAM $static_ram B, peak stack $peak B (stack painting, deepest of both boots)"
    grep -E '^(session open|roundtrip verified|download verified)' "$work/resume.report" | sed 's/^/  /'
fi
[ "$failed" -eq 0 ] || { echo "run-qemu.sh: some cases did not end as expected" >&2; exit 1; }
echo "run-qemu.sh: every case ended as expected"
