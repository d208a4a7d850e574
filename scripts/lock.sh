#!/usr/bin/env bash
# Regenerates requirements.lock and requirements-bench.lock from
# requirements.txt and requirements-bench.txt: every transitive package at
# an exact version with its hashes (`make venv` installs with
# --require-hashes). pip-compile (pip-tools) runs in a throwaway venv.
# Versions already locked are kept unless requirements*.txt asks for
# others (pip-compile reads the existing lock file); delete a lock file to
# take the newest versions, then run the tests before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check pip-tools==7.5.2
compile() {
  local out=$1 header=$2
  shift 2
  PIP_FIND_LINKS= "$tmp/venv/bin/pip-compile" --quiet --no-header --generate-hashes \
    --allow-unsafe --no-strip-extras --no-emit-find-links --no-emit-index-url \
    --output-file "$out" "$@"
  { printf '%s\n' "$header"; cat "$out"; } >"$tmp/out" && mv "$tmp/out" "$out"
}
compile requirements.lock "# The exact version and hashes of every Python package of the local stack
# and the tests, transitive ones included (\`make venv\` installs this with
# --require-hashes). A transitive version once made the stack ten times
# slower, so nothing floats. To change a version: edit requirements.txt,
# then \`make lock\` (scripts/lock.sh) and commit both." requirements.txt
compile requirements-bench.lock "# \`make bench\` only: the exact version and hashes of the Python baseline
# (pandas) and what it needs beyond requirements.lock. \`make lock\`
# regenerates it from requirements-bench.txt." --constraint requirements.lock requirements-bench.txt
echo "requirements.lock and requirements-bench.lock written"
