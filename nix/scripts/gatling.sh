# shellcheck shell=bash
# Runs the Gatling bundle from the Nix store. The bundle compiles simulations into
# $GATLING_HOME/target and insists on a $GATLING_HOME/user-files/lib directory, so it gets a
# writable home that links the read-only libraries and configuration.

home="${XDG_CACHE_HOME:-$HOME/.cache}/rinha/gatling-$GATLING_VERSION"
mkdir -p "$home/user-files/lib"
ln -sfn "$GATLING_BUNDLE/lib" "$home/lib"
ln -sfn "$GATLING_BUNDLE/conf" "$home/conf"

export GATLING_HOME="$home"
exec bash "$GATLING_BUNDLE/bin/gatling.sh" "$@"
