#!/usr/bin/env bash
# The README's two commands on a fresh machine: builds a minimal Debian root with debootstrap (from the Debian
# package registry; only what a machine with a Rust toolchain has: a C linker, git, CA certificates), bind-mounts
# the host's Rust toolchain into it read-only (rustup's servers may be unreachable; cargo's own crate registry
# is used as a user's would be), clones this repository inside, runs the README's main-job command and its test
# command there, and prints the time of each. Not part of CI (it takes tens of minutes).
#
# Usage (as root, on Debian/Ubuntu): bash scripts/fresh-machine.sh [WORK_DIR]
#   WORK_DIR (default: a new folder under ${TMPDIR:-/tmp}) receives the root in WORK_DIR/root; a root already
#   there is reused (KEEP=1 keeps it afterwards). SUITE (bookworm), MIRROR (deb.debian.org) pick the Debian.
#   The shared data set (../shared beside the repository, when present) is mounted beside the clone, as CI has it.
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

mounts=()
cleanup() {
  local m
  for (( i=${#mounts[@]}-1; i>=0; i-- )); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || [ -z "${root:-}" ] || rm -rf --one-file-system "$root"
  printf '%s\n' "fresh-machine summary (Debian $suite root in $root):" "${report[@]}"
}
trap cleanup EXIT
bind() { mkdir -p "$2"; mount --bind "$1" "$2"; mounts+=("$2"); [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2" || true; }

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
bind /proc "$root/proc"
bind /sys "$root/sys"
mkdir -p "$root/dev" && mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev" && mounts+=("$root/dev")
bind "$rustup_home" "$root/opt/rustup" ro
mkdir -p "$root/opt/cargo-bin" && cp -a "$cargo_home/bin/." "$root/opt/cargo-bin/"
[ -d "$repo/../shared" ] && bind "$(cd "$repo/../shared" && pwd)" "$root/home/user/shared" ro
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
