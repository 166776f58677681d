#!/usr/bin/env bash
# Installs the Debian packages Carina and its tests need, where they are missing.
# Each entry: package:path-pattern-that-proves-it-is-installed (absolute paths, so that a
# same-named tool in the virtual environment, e.g. pynetdicom's storescu, does not count).
set -euo pipefail
needed=(
  "tesseract-ocr:/usr/bin/tesseract"
  "dicom3tools:/usr/bin/dciodvfy"
  "dcmtk:/usr/bin/storescu"
  "postgresql:/usr/lib/postgresql/*/bin/initdb"
  "orthanc:/usr/sbin/Orthanc"
  "orthanc-dicomweb:/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
  # the web viewer is built with node/npm; its browser tests drive Debian's chromium
  "nodejs:/usr/bin/node"
  "npm:/usr/bin/npm"
  "chromium:/usr/bin/chromium"
)
missing=()
for item in "${needed[@]}"; do
  pkg=${item%%:*}; pattern=${item#*:}
  compgen -G "$pattern" >/dev/null || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts the services it installs where it can; Carina's tests start their own.
  if [[ " ${missing[*]} " == *" orthanc "* ]] && command -v service >/dev/null; then
    $SUDO service orthanc stop >/dev/null 2>&1 || true
  fi
fi
