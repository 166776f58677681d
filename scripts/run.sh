#!/usr/bin/env bash
# Starts Carina on the embedded defaults (SQLite + files under DATA_DIR, DIMSE on 11112,
# HTTP on 127.0.0.1:8000). On the very first start an administrator "admin" is created with a
# random password, printed once; there is never a default password.
set -euo pipefail
data_dir=${1:-data}
carina=${CARINA_BIN:-.venv/bin/carina}
if ! "$carina" user list --data-dir "$data_dir" | grep -q " yes "; then
  echo "First start: creating the administrator account."
  "$carina" user add admin --admin --data-dir "$data_dir"
  echo "Keep this password; change it with: carina user set-password admin --data-dir $data_dir"
fi
echo "Carina: http://${CARINA_HOST:-127.0.0.1}:${CARINA_PORT:-8000}/ (viewer), /api/docs (API)  (DICOM: AE CARINA, port ${CARINA_DICOM_PORT:-11112})"
exec "$carina" serve --data-dir "$data_dir"
