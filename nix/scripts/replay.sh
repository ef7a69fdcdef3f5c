# shellcheck shell=bash
# The stress test replayed in Rust against the stack on :9999, for machines without a JVM,
# scraping both replicas' metrics. Extra arguments go to `replay run` (--strict, --assert C,
# --junit FILE, --scale F, ...).

require_repository_root
ensure_payloads

exec replay run \
  --payloads "$RINHA_PAYLOADS" \
  --terms "$RINHA_SEARCH_TERMS" \
  --out target/replay \
  --base-url http://localhost:9999 \
  --metrics http://localhost:9081/metrics \
  --metrics http://localhost:9082/metrics \
  "$@"
