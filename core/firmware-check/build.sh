#!/usr/bin/env bash
# Builds the firmware-shaped check image of ferry-core for a Cortex-M4F
# (thumbv7em-none-eabihf) and prints its flash and RAM footprint.
# Exits non-zero if the target cannot be added, the build fails, or the image
# is missing its sections.
#
# Needs: rustup (adds the target's standard library if missing) and binutils
# (`size`, `nm`, `objdump`; they read any 32-bit little-endian ELF).
set -euo pipefail
cd "$(dirname "$0")"

TARGET=thumbv7em-none-eabihf
if ! rustup target list --installed | grep -qx "$TARGET"; then
    echo "build.sh: adding the $TARGET target" >&2
    rustup target add "$TARGET"
fi

cargo build --release --target "$TARGET"

ELF="${CARGO_TARGET_DIR:-target}/$TARGET/release/ferry-firmware-check"
[ -f "$ELF" ] || { echo "build.sh: no image at $ELF" >&2; exit 1; }

section() { size -A "$ELF" | awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }'; }
symbol_u32() {
    local addr word
    addr="$(nm "$ELF" | awk -v s="$1" '$3 == s { print $1 }')"
    [ -n "$addr" ] || { echo "build.sh: symbol $1 missing" >&2; exit 1; }
    word="$(objdump -s --start-address="0x$addr" --stop-address="$((0x$addr + 4))" "$ELF" | tail -n 1 | awk '{ print $2 }')"
    echo "$((16#${word:6:2}${word:4:2}${word:2:2}${word:0:2}))"
}

vector=$(section .vector_table)
text=$(section .text)
rodata=$(section .rodata)
data=$(section .data)
bss=$(section .bss)
uninit=$(section .uninit)
[ "$text" -gt 0 ] || { echo "build.sh: empty .text" >&2; exit 1; }

echo "ferry-firmware-check ($TARGET, opt-level=s, lto, panic=abort): $ELF"
echo "  .vector_table  $vector B"
echo "  .text          $text B"
echo "  .rodata        $rodata B"
echo "  .data          $data B"
echo "  .bss           $bss B"
echo "  flash (vector_table + text + rodata + data): $((vector + text + rodata + data)) B"
echo "  RAM   (data + bss + uninit, without stack):  $((data + bss + uninit)) B"
echo "  size_of::<Connection<[u8; buffer_len(1024)], 4>>() = $(symbol_u32 FERRY_CONNECTION_SIZE) B on $TARGET" \
     "(buffer_len(1024) = $(symbol_u32 FERRY_BUFFER_LEN) B)"
echo "  largest symbols:"
nm -S --size-sort -C "$ELF" | tail -n 8 | while read -r _ sz kind name; do
    printf '    %6d B  %s %s\n' "$((16#$sz))" "$kind" "$name"
done
