#!/usr/bin/env bash
# Install what the node needs and is missing: PostgreSQL 15 server + PostGIS 3 (and gdal-bin,
# Chromium and a CJK font for the tests) as Debian packages, and the Python venv from
# requirements/constraints.txt.
# Idempotent and quick when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_pkgs=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_pkgs+=(postgresql-15)
fi
if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
  need_pkgs+=(postgresql-15-postgis-3)
fi
# gdaldem: the reference the tiler's hillshade is tested against (services/tiler/tests).
if ! command -v gdaldem >/dev/null 2>&1; then
  need_pkgs+=(gdal-bin)
fi
# The portal's browser tests drive Debian's Chromium (tests/e2e/browser.py); its Chinese labels
# need a CJK font, here and on any machine that shows the portal.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  need_pkgs+=(chromium)
fi
if ! { command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh family | grep -q .; }; then
  need_pkgs+=(fontconfig fonts-wqy-zenhei)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing OS packages: ${need_pkgs[*]}; run: sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${need_pkgs[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# The venv is rebuilt only when what it is built from changed.
stamp="$VENV/.csdr-installed"
want=$(cat requirements/constraints.txt requirements/dev.txt services/*/pyproject.toml libs/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "bootstrap: installing the Python environment into $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c requirements/constraints.txt \
  -r requirements/dev.txt -e libs/access -e libs/render -e libs/service -e libs/storage -e services/catalog -e services/tiler -e services/ingest -e services/push -e services/discovery -e services/federation -e services/orders -e services/portal
echo "$want" > "$stamp"
