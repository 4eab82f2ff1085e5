#!/usr/bin/env bash
# Installs what l2o needs at run time on Debian/Ubuntu: a Vulkan loader and, when no Vulkan driver is present,
# Mesa's software adapter (lavapipe); and, when EGL is missing, Mesa's GL driver, so that the kernel tests also
# run on wgpu's GL backend (llvmpipe through EGL: no f64, like Metal); with --mpi, what distributed training
# needs to build and run (`cargo build -p l2o-cli --features mpi`, mpirun): OpenMPI with its headers, pkg-config
# and libclang (rsmpi generates its bindings with bindgen). Needs root or sudo for apt-get; does nothing when
# everything is there.
set -euo pipefail
mpi=0
for arg in "$@"; do
  case "$arg" in
    --mpi) mpi=1 ;;
    *) echo "setup: unknown option $arg (use --mpi for OpenMPI)" >&2; exit 2 ;;
  esac
done
have_icd() { compgen -G '/usr/share/vulkan/icd.d/*.json' >/dev/null || compgen -G '/etc/vulkan/icd.d/*.json' >/dev/null; }
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
pkgs=()
if ! (have_icd && have_lib 'libvulkan\.so\.1'); then
  pkgs+=(mesa-vulkan-drivers libvulkan1)
fi
if ! (have_lib 'libEGL\.so\.1' && have_lib 'libEGL_mesa\.so\.0'); then
  pkgs+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
fi
# the Python package's tests (scripts/test-python.sh): an interpreter with venv and pip
if ! (command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1); then
  pkgs+=(python3 python3-venv python3-pip)
fi
# distributed training (--mpi): OpenMPI (mpirun, headers, pkg-config file), pkg-config, libclang for bindgen
if [ "$mpi" -eq 1 ]; then
  if ! (command -v mpirun >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 && pkg-config --exists ompi); then
    pkgs+=(libopenmpi-dev openmpi-bin pkg-config)
  fi
  if ! (ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' || compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null); then
    pkgs+=(libclang-dev)
  fi
fi
if [ ${#pkgs[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: missing ${pkgs[*]} and no apt-get: install a Vulkan driver (or Mesa lavapipe) for your system" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${pkgs[*]} (Vulkan loader, Mesa's software Vulkan driver lavapipe, Mesa EGL/GL, Python venv; --mpi: OpenMPI, libclang)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
