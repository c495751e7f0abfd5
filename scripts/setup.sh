#!/usr/bin/env bash
# Makes a fresh machine able to run the project: npm packages, a WebGPU adapter, Chromium, NumPy, and
# the C toolchain of the native library.
# Without a GPU, WebGPU runs through Mesa's lavapipe (CPU Vulkan). Dawn rejects Mesa 22 (Debian 12's
# default), so on Debian 12 the driver comes from bookworm-backports (Mesa 25), on the same mirror as the
# machine's other Debian sources.
set -euo pipefail
cd "$(dirname "$0")/.."

have_lavapipe() {
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || return 1
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)
  dpkg --compare-versions "$v" ge 23 2>/dev/null
}

if [ "${VICREG_SKIP_DRIVER:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1 && ! have_lavapipe; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ "$codename" = bookworm ]; then
    src=/etc/apt/sources.list.d/debian.sources
    uri=$(awk '/^URIs:/ {print $2; exit}' "$src" 2>/dev/null || true)
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    list=/etc/apt/sources.list.d/bookworm-backports.sources
    if [ ! -f "$list" ]; then
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" | $sudo tee "$list" >/dev/null
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
fi

# Chromium for test/browser.test.ts (the browser demo, WebGPU on Chromium's own SwiftShader). Debian's
# package, never a downloaded browser; recommends (upower, printing, GL drivers) are not needed headless.
if [ "${VICREG_SKIP_CHROMIUM:-0}" != 1 ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# NumPy (OpenBLAS) for the CPU baseline, bench/numpy_vicreg.py (npm run bench -- --openblas, and its
# check in test/bench-reference.test.ts): pip's wheel where python3 lacks it, else Debian's package.
if [ "${VICREG_SKIP_NUMPY:-0}" != 1 ] && ! python3 -c 'import numpy' >/dev/null 2>&1; then
  if ! python3 -m pip install -q numpy >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-numpy >/dev/null
  fi
fi

# A C compiler, make and cJSON (Debian's libcjson-dev) for the native library and program (native/,
# npm run native); Dawn itself comes from the npm package bun-webgpu-linux-x64, pinned in package-lock.json.
have_native_tools() {
  command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1 && [ -f /usr/include/cjson/cJSON.h ]
}
if [ "${VICREG_SKIP_NATIVE:-0}" != 1 ] && ! have_native_tools && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends gcc libc6-dev make libcjson-dev >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
