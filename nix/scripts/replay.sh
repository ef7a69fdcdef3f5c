# shellcheck shell=bash
# The stress test replayed in Rust against the stack on :9999, for machines without a JVM.
# Extra arguments go to `replay run`.

exec replay run --base-url http://localhost:9999 "$@"
