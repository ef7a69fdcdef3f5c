#!/usr/bin/env bash
# Prepares a Debian machine without a Docker engine for the container stack (`cargo xtask images`,
# `compose-up`, `compose-stress`): podman with the runc runtime, mmdebstrap for the images, and
# podman-compose. Idempotent: it installs only what is missing and rewrites its own settings.
set -euo pipefail

packages=(podman runc mmdebstrap python3-venv)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query --show --showformat='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  apt_get=(apt-get -o DPkg::Lock::Timeout=600 -qq)
  "${apt_get[@]}" update
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y "${missing[@]}" >/dev/null
fi

# runc, because crun refuses hybrid cgroup hierarchies ("cgroups in hybrid mode not supported").
# No default ulimits: raising nofile to podman's default fails with "operation not permitted"
# where the calling process's own hard limit is lower; containers inherit the caller's limits.
mkdir -p /etc/containers/containers.conf.d
cat >/etc/containers/containers.conf.d/rinha.conf <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF

# podman-compose from PyPI, at the version whose handling of deploy.resources.limits was checked,
# in its own environment of Debian's Python.
podman_compose_version=1.6.0
venv=/opt/podman-compose
if [[ "$("$venv/bin/podman-compose" --version 2>/dev/null | head -n 1)" != "podman-compose version $podman_compose_version" ]]; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "podman-compose==$podman_compose_version"
fi
ln -sf "$venv/bin/podman-compose" /usr/local/bin/podman-compose

podman --version
podman-compose --version | head -n 1
