#!/usr/bin/env bash
# Installs what the end-to-end benchmark (benches/e2e) compares Ferry with, and builds the
# `ferry` client binary it drives. Idempotent: installs only the missing Debian packages
# (running `apt-get update` first, and only then), and cargo rebuilds only what changed.
#
#   bash host-server/benches/e2e/install-tools.sh [--target-dir DIR] [--debug] [TOOL...]
#
# TOOL is any of ferry, nginx, scp, sftp, rsync (default: all of them). The bench calls it
# once at start with its own target directory, profile and FERRY_BENCH_TOOLS.
set -euo pipefail

target_dir="${CARGO_TARGET_DIR:-}"
profile=release
tools=()
while (($#)); do
    case "$1" in
    --target-dir) target_dir="$2"; shift 2 ;;
    --debug) profile=debug; shift ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "install-tools.sh: unknown option $1" >&2; exit 2 ;;
    *) tools+=("$1"); shift ;;
    esac
done
((${#tools[@]})) || tools=(ferry nginx scp sftp rsync)

wants() {
    local tool
    for tool in "${tools[@]}"; do
        [[ "$tool" == "$1" ]] && return 0
    done
    return 1
}

# program (a path, or a name looked up in PATH) -> the Debian package that provides it
declare -A package_of=()
# GNU time reports each measured client's CPU and peak RSS (its rusage from wait4)
package_of[/usr/bin/time]=time
if wants nginx; then
    package_of[/usr/sbin/nginx]=nginx
    package_of[curl]=curl
fi
if wants scp || wants sftp || wants rsync; then
    package_of[/usr/sbin/sshd]=openssh-server
    package_of[/usr/lib/openssh/sftp-server]=openssh-sftp-server
    for program in ssh scp sftp ssh-keygen; do
        package_of[$program]=openssh-client
    done
fi
if wants rsync; then
    package_of[rsync]=rsync
fi

missing=()
for program in "${!package_of[@]}"; do
    if [[ "$program" == */* ]]; then
        [[ -e "$program" ]] && continue
    elif command -v "$program" >/dev/null; then
        continue
    fi
    missing+=("${package_of[$program]}")
done

if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
        echo "install-tools.sh: missing tools: install the Debian packages ${missing[*]} (or run as root with apt-get)" >&2
        exit 1
    fi
    echo "install-tools.sh: installing ${missing[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if wants ferry; then
    workspace="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
    build=(build -p ferry-client --bin ferry)
    [[ "$profile" == release ]] && build+=(--release)
    [[ -n "$target_dir" ]] && build+=(--target-dir "$target_dir")
    echo "install-tools.sh: cargo ${build[*]}" >&2
    (cd "$workspace" && "${CARGO:-cargo}" "${build[@]}")
fi
