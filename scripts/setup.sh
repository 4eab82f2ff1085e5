#!/usr/bin/env bash
# Installs what l2o needs at run time on Debian/Ubuntu: a Vulkan loader and, when no Vulkan driver is present,
# Mesa's software adapter (lavapipe). Needs root or sudo for apt-get; does nothing when a driver is there.
set -euo pipefail
have_icd() { ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; }
have_loader() { ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; }
if have_icd && have_loader; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: no Vulkan driver found and no apt-get: install a Vulkan driver (or Mesa lavapipe) for your system" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing the Vulkan loader and Mesa's software Vulkan driver (lavapipe)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
