#!/usr/bin/env bash
# Installs what is missing, builds modeldist (Release) and starts modeldist-server on its
# embedded default: a SQLite catalog and a local blob store under ./modeldist-data.
#
#   tools/run-server.sh [extra modeldist-server flags]
#   LISTEN=127.0.0.1:9000 DATA_DIR=/srv/modeldist tools/run-server.sh
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
cmake -S . -B build/server -DCMAKE_BUILD_TYPE=Release -DMODELDIST_BUILD_TESTS=OFF \
  -DMODELDIST_BUILD_BENCH=OFF >/dev/null
cmake --build build/server -j"$(nproc)" --target modeldist-server modeldistctl

DATA_DIR=${DATA_DIR:-$PWD/modeldist-data}
LISTEN=${LISTEN:-127.0.0.1:8470}
mkdir -p "$DATA_DIR"
TOKEN_FILE=$DATA_DIR/admin.token
if [[ ! -s $TOKEN_FILE ]]; then
  (umask 077 && openssl rand -hex 32 >"$TOKEN_FILE")
  echo "created admin token file $TOKEN_FILE (mode 0600)"
fi
echo "modeldistctl is at build/server/client/modeldistctl/modeldistctl; pass --token-file $TOKEN_FILE"
exec build/server/services/modeldist-server --listen "$LISTEN" --data-dir "$DATA_DIR" \
  --admin-token-file "$TOKEN_FILE" "$@"
