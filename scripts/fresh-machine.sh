#!/usr/bin/env bash
# The README's two commands on a fresh machine: builds a minimal Debian root with debootstrap (from the Debian
# package registry; only what a machine with a Rust toolchain has: a C linker, git, CA certificates), copies
# the host's Rust toolchain into it (rustup's servers may be unreachable; cargo's own crate registry
# is used as a user's would be), clones this repository inside, runs the README's main-job command and its test
# command there, and prints the time of each. Not part of CI (it takes tens of minutes).
#
# Usage (as root, on Debian/Ubuntu): bash scripts/fresh-machine.sh [WORK_DIR]
#   WORK_DIR (default: a new folder under ${TMPDIR:-/tmp}) receives the root in WORK_DIR/root; a root already
#   there is reused (KEEP=1 keeps it afterwards). SUITE (bookworm), MIRROR (deb.debian.org) pick the Debian.
#   The shared data set (../shared beside the repository, when present) is copied beside the clone, as CI has it.
#   FRESH_COPY (colon-separated directories) are copied to the same paths inside the root: what a toolchain that
#   is not self-contained needs (one added with `rustup toolchain link` from another prefix, say).
#   Nothing of the host is mounted into the root but /proc, /sys and /dev: the toolchain and the data are copies,
#   so removing the root can never reach the host's files, and stale mounts of an interrupted run are undone
#   before a root is reused or removed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d "${TMPDIR:-/tmp}/l2o-fresh.XXXX")}"
suite="${SUITE:-bookworm}"
mirror="${MIRROR:-http://deb.debian.org/debian}"
root="$work/root"
[ "$(id -u)" -eq 0 ] || { echo "fresh-machine: run as root (debootstrap, chroot, mounts)" >&2; exit 1; }
command -v debootstrap >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
[ -d "$rustup_home/toolchains" ] && [ -x "$cargo_home/bin/cargo" ] || { echo "fresh-machine: no rustup toolchain in $rustup_home / $cargo_home" >&2; exit 1; }

stamp() { date +%s; }
report=()
timed() { # name, command...
  local name=$1 t0 rc
  shift
  t0=$(stamp)
  set +e
  "$@"
  rc=$?
  set -e
  report+=("$(printf '%-34s %5d s  exit %d' "$name" $(( $(stamp) - t0 )) "$rc")")
  return "$rc"
}

# everything mounted at or under the root, deepest first (also what an interrupted earlier run left behind)
mounted_under() { findmnt -rn -o TARGET | awk -v r="$root" '$0 == r || index($0, r "/") == 1' | sort -r; }
unmount_all() { local m; for m in $(mounted_under); do umount -l "$m" 2>/dev/null || true; done; }
cleanup() {
  unmount_all
  if [ "${KEEP:-0}" != 1 ] && [ -n "${root:-}" ] && [ -d "$root" ]; then
    if [ -n "$(mounted_under)" ]; then
      echo "fresh-machine: not removing $root: still mounted: $(mounted_under | tr '\n' ' ')" >&2
    else
      rm -rf --one-file-system "$root"
    fi
  fi
  printf '%s\n' "fresh-machine summary (Debian $suite root in $root):" "${report[@]}"
}
trap cleanup EXIT
unmount_all
[ -z "$(mounted_under)" ] || { echo "fresh-machine: cannot unmount $(mounted_under | tr '\n' ' ')" >&2; exit 1; }

if [ ! -x "$root/bin/bash" ]; then
  timed "debootstrap (minbase + gcc, git)" debootstrap --variant=minbase \
    --include=ca-certificates,git,gcc,libc6-dev "$suite" "$root" "$mirror" >/dev/null
fi
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# the host's own certificate authorities (a site proxy's), so that the crate and Python registries answer as they
# do on the host; a real fresh machine has its site's CAs too
if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
mkdir -p "$root/proc" "$root/sys" "$root/dev"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
# copies, not mounts (see the header)
rm -rf --one-file-system "$root/opt/rustup" "$root/opt/cargo-bin" "$root/home/user/shared"
mkdir -p "$root/opt" "$root/home/user"
cp -a "$rustup_home" "$root/opt/rustup"
mkdir -p "$root/opt/cargo-bin" && cp -a "$cargo_home/bin/." "$root/opt/cargo-bin/"
IFS=: read -r -a extra <<< "${FRESH_COPY:-}"
for d in "${extra[@]}"; do [ -z "$d" ] || { mkdir -p "$root$(dirname "$d")"; rm -rf --one-file-system "$root$d"; cp -a "$d" "$root$d"; }; done
[ -d "$repo/../shared" ] && cp -a "$(cd "$repo/../shared" && pwd)" "$root/home/user/shared"
rm -rf "$root/home/user/main"
git clone -q "$repo" "$root/home/user/main"

# the README's two commands, exactly as written there (the lines after "```bash" in Quick start)
main_cmd="$(grep -m1 -E '^bash scripts/setup.sh && cargo build --release' "$repo/README.md")"
test_cmd="$(tail -n 1 "$repo/.ci/run")"
grep -qxF "$test_cmd" "$repo/README.md" || { echo "fresh-machine: the test command of .ci/run is not in README.md" >&2; exit 1; }
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/opt/cargo-bin:/usr/local/bin:/usr/bin:/bin \
    RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo RUSTUP_TOOLCHAIN="$(cd "$repo" && rustup show active-toolchain | cut -d' ' -f1)" \
    XDG_RUNTIME_DIR=/tmp/xdg TERM=dumb /bin/bash -c "mkdir -p -m 700 /tmp/xdg; cd /home/user/main && $1"
}
echo "fresh-machine: main job: $main_cmd" >&2
timed "README main job" in_root "$main_cmd"
ls "$root/home/user/main/out/l2l/eval" >&2
echo "fresh-machine: tests: $test_cmd" >&2
timed "README test command (.ci/run)" in_root "bash .ci/run"
