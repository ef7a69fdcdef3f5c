# shellcheck shell=bash
# Functions shared by the load generators' apps, which nix/apps.nix puts in front of each script.
# Both run from the repository root, where the simulation, its feeder files (RINHA_PAYLOADS and
# RINHA_SEARCH_TERMS, relative to the root) and target/ are.

require_repository_root() {
  if [[ ! -f $RINHA_SEARCH_TERMS ]]; then
    echo "run this from the repository root (no $RINHA_SEARCH_TERMS here)" >&2
    exit 1
  fi
}

# The creation payloads are generated, not committed: make them on first use.
ensure_payloads() {
  if [[ ! -s $RINHA_PAYLOADS ]]; then
    replay payloads --out "$RINHA_PAYLOADS"
  fi
}
