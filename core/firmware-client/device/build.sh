#!/usr/bin/env bash
# Builds the two no_main images of this crate for a Cortex-M4F
# (thumbv7em-none-eabihf; opt-level "z", LTO, panic=abort, no allocator) for
# each board named (default: stm32f407 mps2-an386): the device client
# (ferry-core + embedded-tls) and the core alone (ferry-firmware-check); copies
# them to target/BOARD-device.elf and target/BOARD-check.elf and prints their
# flash and RAM footprint. The peak stack is
# measured on the emulator (run-qemu.sh prints it beside these figures).
# Exits non-zero if the target cannot be added, a build fails, or an image is
# missing its sections or links an allocator.
#
# Needs: rustup (adds the target's standard library if missing) and binutils
# (`size`, `nm`, `objdump`; they read any 32-bit little-endian ELF).
set -euo pipefail
cd "$(dirname "$0")"

TARGET=thumbv7em-none-eabihf
boards=("$@")
[ ${#boards[@]} -gt 0 ] || boards=(stm32f407 mps2-an386)
if ! rustup target list --installed | grep -qx "$TARGET"; then
    echo "build.sh: adding the $TARGET target" >&2
    rustup target add "$TARGET"
fi

section() { size -A "$ELF" | awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }'; }
symbol_u32() {
    local addr word
    addr="$(nm "$ELF" | awk -v s="$1" '$3 == s { print $1 }')"
    [ -n "$addr" ] || { echo "build.sh: symbol $1 missing" >&2; exit 1; }
    word="$(objdump -s -j .rodata --start-address="0x$addr" --stop-address="$((0x$addr + 4))" "$ELF" | tail -n 1 | awk '{ print $2 }')"
    echo "$((16#${word:6:2}${word:4:2}${word:2:2}${word:0:2}))"
}

# Prints an image's sections, flash and static RAM, and largest symbols.
footprint() {
    local vector text rodata data bss uninit provisioning_hex
    vector=$(section .vector_table)
    text=$(section .text)
    rodata=$(section .rodata)
    data=$(section .data)
    bss=$(section .bss)
    uninit=$(section .uninit)
    [ "$text" -gt 0 ] || { echo "build.sh: empty .text" >&2; exit 1; }
    if nm -C "$ELF" | grep -qiE '__rust_alloc|__rg_alloc|GlobalAlloc'; then
        echo "build.sh: $ELF links an allocator" >&2
        exit 1
    fi
    provisioning_hex=$(nm -S "$ELF" | awk '$4 == "PROVISIONING" { print $2 }')
    echo "  .vector_table  $vector B"
    echo "  .text          $text B"
    echo "  .rodata        $rodata B${provisioning_hex:+ (of which the provisioning block: $((16#$provisioning_hex)) B)}"
    echo "  .data          $data B"
    echo "  .bss           $bss B"
    echo "  .uninit        $uninit B"
    echo "  flash (vector_table + text + rodata + data): $((vector + text + rodata + data)) B"
    echo "  RAM, static (data + bss + uninit):           $((data + bss + uninit)) B"
}

# Flash (code and read-only data) by crate, from the symbol sizes: where each KiB goes.
by_crate() {
    echo "  flash by crate (symbols in .text and .rodata):"
    nm -S -C "$ELF" | awk '
        function hex(s,   i, n) { n = 0; s = tolower(s)
            for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
            return n }
        NF >= 4 && $3 ~ /^[tTrR]$/ {
            name = $4; sub(/^[<_&]+/, "", name); sub(/^(mut |dyn )/, "", name)
            crate = name; sub(/[^A-Za-z0-9_].*/, "", crate)
            if (crate == "" || crate ~ /^(T|Lanon)$/) crate = "(other)"
            sum[crate] += hex($2) }
        END { for (c in sum) printf "%8d B  %s\n", sum[c], c }' | sort -rn | awk 'NR <= 14'
}

largest() {
    echo "  largest symbols:"
    nm -S --size-sort -C "$ELF" | grep -v ' [NnUu] ' | tail -n "$1" | while read -r _ sz kind name; do
        printf '    %6d B  %s %s\n' "$((16#$sz))" "$kind" "$name"
    done
}

for board in "${boards[@]}"; do
    nice -n 10 cargo build --release --target "$TARGET" --no-default-features --features "$board"
    mkdir -p target
    for image in ferry-firmware-device ferry-firmware-check; do
        built="${CARGO_TARGET_DIR:-target}/$TARGET/release/$image"
        [ -f "$built" ] || { echo "build.sh: no image at $built" >&2; exit 1; }
        cp "$built" "target/$board${image#ferry-firmware}.elf"
    done

    ELF="target/$board-device.elf"
    echo "ferry-firmware-device, board $board ($TARGET, opt-level=z, lto, panic=abort, no allocator): $(pwd)/$ELF"
    footprint
    echo "    of which the client's buffers (SmallBuffers: TLS 2 x 2048, core 2 x 2126, chunk 1024, input 256): $(symbol_u32 FERRY_BUFFERS_SIZE) B"
    echo "  RAM, state on the stack while a session runs (size_of on $TARGET):"
    echo "    core Connection (window 4, buffers borrowed): $(symbol_u32 FERRY_CONNECTION_SIZE) B"
    echo "    embedded-tls TlsConnection:                  $(symbol_u32 FERRY_TLS_SIZE) B"
    echo "    server verifier (handshake only):            $(symbol_u32 FERRY_VERIFIER_SIZE) B"
    by_crate
    largest 8

    ELF="target/$board-check.elf"
    echo "ferry-firmware-check (ferry-core alone, no TLS), board $board: $(pwd)/$ELF"
    footprint
    echo "  size_of::<Connection<[u8; buffer_len(1024)], 4>>() = $(symbol_u32 FERRY_CONNECTION_SIZE) B on $TARGET" \
        "(buffer_len(1024) = $(symbol_u32 FERRY_BUFFER_LEN) B)"
    largest 5
done
