#!/usr/bin/env bash
# Installs the Debian packages Carina and its tests need, where they are missing.
set -euo pipefail
# package:command-that-proves-it-is-there
needed=(
  "tesseract-ocr:/usr/bin/tesseract"
  "dicom3tools:/usr/bin/dciodvfy"
  "dcmtk:/usr/bin/storescu"
)
missing=()
for item in "${needed[@]}"; do
  pkg=${item%%:*}; cmd=${item##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
