# shellcheck shell=bash
# Loads the stack's images into the container engine and starts the compose stack, returning
# once every service reports healthy.

engine=$(container_engine)
for image in $RINHA_IMAGES; do
  "$image" | "$engine" load
done
compose up --detach --wait --no-build
echo "the API answers on http://localhost:9999"
