#!/usr/bin/env bash
# Installs what l2o's build and tests load, on Debian/Ubuntu, deciding by the files each consumer opens:
#   - wgpu's Vulkan backend: the Vulkan loader (libvulkan.so.1) and at least one ICD manifest
#     (…/vulkan/icd.d/*.json); without them Mesa's software adapter lavapipe (mesa-vulkan-drivers);
#   - wgpu's GL backend (the kernel tests' second pass): libEGL.so.1 and Mesa's EGL vendor libEGL_mesa.so.0;
#   - scripts/test-python.sh: python3 with the venv and ensurepip modules;
#   - with --mpi (`--features l2o-cli/mpi`, mpirun): OpenMPI's mpicc, mpirun and its pkg-config file ompi.pc,
#     pkg-config itself, and what bindgen (rsmpi's build script) dlopens: the *C* API of libclang —
#     libclang.so, libclang-N.so or libclang.so.N, not libclang-cpp.so.N (the C++ interface Mesa pulls in) —
#     plus clang's builtin headers (stddef.h), which bindgen needs to parse mpi.h.
# Options: --mpi as above; --check only reports what is missing (exit 0 when nothing is, 1 otherwise) and
# installs nothing. L2O_SETUP_ROOT=<dir> inspects a system image under <dir> instead of / (the tests use it).
# Needs root or sudo for apt-get; does nothing when everything is there.
set -euo pipefail
mpi=0
check=0
for arg in "$@"; do
  case "$arg" in
    --mpi) mpi=1 ;;
    --check) check=1 ;;
    *) echo "setup: unknown option $arg (use --mpi for OpenMPI, --check to only report what is missing)" >&2; exit 2 ;;
  esac
done
ROOT="${L2O_SETUP_ROOT:-}"
shopt -s nullglob

# the folders the dynamic loader and the build scripts search, under ROOT
lib_dirs() {
  local d
  for d in "$ROOT"/lib "$ROOT"/lib64 "$ROOT"/usr/lib "$ROOT"/usr/lib64 "$ROOT"/usr/local/lib \
           "$ROOT"/lib/*-linux-gnu "$ROOT"/usr/lib/*-linux-gnu "$ROOT"/usr/local/lib/*-linux-gnu \
           "$ROOT"/usr/lib/llvm-*/lib; do
    [ -d "$d" ] && printf '%s\n' "$d"
  done
  return 0
}
# have_lib NAME...: one of the exact file names exists in a library folder (or, on the real system, in
# ldconfig's cache); NAME may be a glob such as 'libclang-[0-9]*.so'
have_lib() {
  local d n f
  if [ -z "$ROOT" ] && command -v ldconfig >/dev/null 2>&1; then
    local cache
    cache="$(ldconfig -p 2>/dev/null | awk '{print $1}')"
    for n in "$@"; do
      while read -r f; do
        # shellcheck disable=SC2053
        [[ -n "$f" && "$f" == $n ]] && return 0
      done <<<"$cache"
    done
  fi
  while read -r d; do
    for n in "$@"; do
      for f in "$d"/$n; do [ -e "$f" ] && return 0; done
    done
  done < <(lib_dirs)
  return 1
}
have_cmd() {
  if [ -z "$ROOT" ]; then command -v "$1" >/dev/null 2>&1; return; fi
  local d
  for d in /usr/local/bin /usr/bin /bin /usr/local/sbin /usr/sbin /sbin; do
    [ -x "$ROOT$d/$1" ] && return 0
  done
  return 1
}
have_file() { local f; for f in "$@"; do [ -e "$f" ] && return 0; done; return 1; }
have_icd() { have_file "$ROOT"/usr/share/vulkan/icd.d/*.json "$ROOT"/etc/vulkan/icd.d/*.json; }
# a pkg-config module, by its .pc file (pkg-config's own search path on the real system)
have_pc() {
  if [ -z "$ROOT" ] && command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1"; then return 0; fi
  local d
  while read -r d; do
    have_file "$d/pkgconfig/$1.pc" "$d"/openmpi/lib/pkgconfig/"$1".pc && return 0
  done < <(lib_dirs; printf '%s\n' "$ROOT/usr/share")
  return 1
}
have_python_venv() {
  if [ -z "$ROOT" ]; then
    command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1
    return
  fi
  have_cmd python3 && have_file "$ROOT"/usr/lib/python3*/venv/__init__.py && have_file "$ROOT"/usr/lib/python3*/ensurepip/__init__.py
}
# bindgen's libclang: the C API only (clang-sys looks for libclang.so, libclang-*.so, libclang.so.*)
have_libclang_c() {
  have_lib 'libclang.so' 'libclang-[0-9]*.so' 'libclang.so.[0-9]*' 'libclang-[0-9]*.so.[0-9]*' && return 0
  # the Debian package that provides it (its files may sit outside the folders above)
  [ -z "$ROOT" ] && command -v dpkg >/dev/null 2>&1 && dpkg -s libclang-dev 2>/dev/null | grep -q '^Status: install ok installed' && return 0
  return 1
}
have_clang_headers() {
  have_file "$ROOT"/usr/lib/llvm-*/lib/clang/*/include/stddef.h "$ROOT"/usr/lib/clang/*/include/stddef.h \
            "$ROOT"/usr/local/lib/clang/*/include/stddef.h
}

pkgs=()
why=()
if ! (have_icd && have_lib 'libvulkan.so.1'); then
  pkgs+=(mesa-vulkan-drivers libvulkan1); why+=("Vulkan loader and driver (lavapipe)")
fi
if ! (have_lib 'libEGL.so.1' && have_lib 'libEGL_mesa.so.0'); then
  pkgs+=(libegl1 libegl-mesa0 libgl1-mesa-dri); why+=("EGL/GL for the GL pass")
fi
if ! have_python_venv; then
  pkgs+=(python3 python3-venv python3-pip); why+=("python3 with venv")
fi
if [ "$mpi" -eq 1 ]; then
  if ! (have_cmd mpicc && have_cmd mpirun && have_pc ompi); then
    pkgs+=(libopenmpi-dev openmpi-bin); why+=("OpenMPI")
  fi
  if ! have_cmd pkg-config; then
    pkgs+=(pkg-config); why+=("pkg-config")
  fi
  if ! (have_libclang_c && have_clang_headers); then
    pkgs+=(libclang-dev); why+=("libclang's C API for bindgen")
  fi
fi
if [ "$check" -eq 1 ]; then
  if [ ${#pkgs[@]} -eq 0 ]; then echo "setup: nothing missing"; exit 0; fi
  echo "setup: missing: ${pkgs[*]}"
  exit 1
fi
if [ ${#pkgs[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: missing ${pkgs[*]} ($(IFS=';'; echo "${why[*]}")) and no apt-get: install the equivalents for your system" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${pkgs[*]} ($(IFS=';'; echo "${why[*]}"))" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
