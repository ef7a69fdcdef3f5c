# shellcheck shell=bash
# Functions shared by the stack's apps, which nix/apps.nix puts in front of each script.

# The container engine: docker when its daemon answers, podman otherwise.
container_engine() {
  if docker info >/dev/null 2>&1; then
    echo docker
  elif podman info >/dev/null 2>&1; then
    echo podman
  else
    echo "neither a docker daemon nor podman answers; start one of them first" >&2
    return 1
  fi
}

# Compose always runs through nixpkgs' docker-compose, so every engine gets the same compose
# features (--wait among them); podman serves it through its Docker-compatible socket.
compose() {
  local engine
  engine=$(container_engine)
  if [[ $engine == podman && -z ${DOCKER_HOST:-} ]]; then
    local -x DOCKER_HOST
    DOCKER_HOST="unix://$(podman info --format '{{.Host.RemoteSocket.Path}}')"
  fi
  docker-compose --file "$RINHA_COMPOSE_FILE" "$@"
}
