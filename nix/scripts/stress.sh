# shellcheck shell=bash
# Runs the contest's Gatling simulation against the stack on :9999, then prints where the report
# is and how many people the API counts afterwards.

require_repository_root
ensure_payloads

results="$PWD/target/gatling"
mkdir -p "$results"
# The short options are the ones the contest's own scripts passed to this Gatling version.
gatling -rm local \
  -s "$RINHA_SIMULATION" \
  -rd rinha \
  -rf "$results" \
  -sf "$PWD/gatling/simulations" \
  -rsf "$PWD/gatling/resources"

# Gatling names each run's folder after the simulation and its start time.
report=$(find "$results" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d ' ' -f 2-)
echo "report: $report/index.html"
echo "count: $(curl --fail --silent --show-error http://localhost:9999/contagem-pessoas)"
