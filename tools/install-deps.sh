#!/bin/sh
# Installs morphcat's build, test and reference packages from Debian, once: packages already present are
# not touched, so a second run is a no-op. Needs root (or sudo) only when something is missing.
set -e
PKGS="build-essential pkg-config libopenblas-dev libopenblas0-pthread libzip-dev libcjson-dev libssl-dev
      libcfitsio-dev wcslib-dev zlib1g-dev libpng-dev libjpeg-dev libhdf5-openmpi-dev hdf5-tools openmpi-bin libinih-dev
      libcsv-dev libxxhash-dev python3-numpy python3-torch python3-torchvision python3-pil python3-h5py python3-astropy
      python3-scipy python3-xxhash slurm-wlm munge iproute2 clang-14 libclang-rt-14-dev
      libcairo2-dev fonts-dejavu-core chromium liblapacke-dev python3-sklearn"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: all Debian packages present"
    exit 0
fi
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
