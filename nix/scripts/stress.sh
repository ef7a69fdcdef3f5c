# shellcheck shell=bash
# Runs the contest's Gatling simulation against the stack on :9999 from the repository root:
# generates the people payloads if they are missing, then prints where the report is and how
# many people the API counts afterwards.

if [[ ! -d gatling/simulations ]]; then
  echo "run this from the repository root (no gatling/simulations here)" >&2
  exit 1
fi

payloads=gatling/resources/pessoas-payloads.tsv
if [[ ! -s $payloads ]]; then
  replay payloads --out "$payloads"
fi

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
