#!/usr/bin/env bash
# Makes the base images docker/Dockerfile builds on, from Debian's packages, for a machine that
# has Debian's mirror and crates.io but neither Docker Hub nor gcr.io:
#
# - gcr.io/distroless/cc-debian12:nonroot, under the name the Dockerfile's runtime stage uses: a
#   local equivalent of that image, the same Debian 12 packages (libc6, libssl3, libgcc-s1,
#   libgomp1, libstdc++6, with the CA bundle, tzdata, netbase and base-files), no shell or
#   package manager, the user nonroot (65532:65532).
# - localhost/rinha-rust-build:<version>-bookworm: Debian 12 with gcc, libc6-dev, make and this
#   machine's Rust toolchain, for the Dockerfile's RUST_IMAGE argument. It is named after the
#   toolchain it holds, not after the public rust image the Dockerfile defaults to.
#
# Usage: docker/base-images.sh [--rebuild]
# An image that already exists is kept unless --rebuild is given. Progress goes to stderr; stdout
# gets the build image's name, so that CI can run
#   podman build --build-arg RUST_IMAGE="$(bash docker/base-images.sh)" ...
# CONTAINER_ENGINE=docker|podman chooses the engine (podman by default); run as root, as
# mmdebstrap needs for a root filesystem with its owners.
set -euo pipefail

rebuild=false
case "$#:${1-}" in
  0:) ;;
  1:--rebuild) rebuild=true ;;
  *)
    echo "usage: $0 [--rebuild]" >&2
    exit 2
    ;;
esac

engine=${CONTAINER_ENGINE:-podman}
# The Debian release distroless' cc-debian12 and rust's *-bookworm images are made from.
suite=bookworm
runtime_image=gcr.io/distroless/cc-debian12:nonroot
rust_sysroot=$(rustc --print sysroot)
rust_version=$(rustc --version | cut -d ' ' -f 2)
rust_image=localhost/rinha-rust-build:${rust_version}-${suite}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log() { printf '==> %s\n' "$*" >&2; }

exists() { "$engine" image inspect "$1" >/dev/null 2>&1; }

# Documentation and translations are left out, except the copyright files, which the packages'
# licences ask to ship with them.
mmdebstrap_options=(
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt=force-unsafe-io
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
)

# A full Debian system is installed (maintainer scripts need its shell and dpkg), then only the
# kept packages' files, the CA bundle ca-certificates generates and the accounts are imported.
build_runtime() {
  local kept=(base-files libc6 libgcc-s1 libgomp1 libssl3 libstdc++6 netbase tzdata)
  local debian=$work/runtime-debian image=$work/runtime-image
  mmdebstrap --variant=essential --include=ca-certificates,libgomp1,libstdc++6,netbase,tzdata \
    "${mmdebstrap_options[@]}" --format=directory "$suite" "$debian" 2>"$work/runtime.log" \
    || { cat "$work/runtime.log" >&2; return 1; }

  # Debian 12's /usr is merged: the packages name /lib/..., which is usr/lib/... behind the
  # symlink lib. Each path is taken through its real parent directory, and the top-level
  # symlinks come along, so the image has the same layout. Paths dpkg left out are skipped.
  local path parent
  local -A real_parents=()
  {
    find "$debian" -mindepth 1 -maxdepth 1 -type l -printf './%P\n'
    while read -r path; do
      if [[ ! -e $debian$path && ! -L $debian$path ]]; then continue; fi
      parent=${path%/*}
      if [[ -z $parent ]]; then
        echo ".$path"
        continue
      fi
      if [[ ! -v real_parents[$parent] ]]; then
        real_parents[$parent]=$(realpath --relative-to="$debian" "$debian$parent")
      fi
      echo "./${real_parents[$parent]}/${path##*/}"
    done < <(
      dpkg-query --admindir="$debian/var/lib/dpkg" --listfiles "${kept[@]}" | grep '^/.' | sort -u
      printf '%s\n' /etc/ssl /etc/ssl/certs /etc/ssl/certs/ca-certificates.crt
    )
  } | sort -u >"$work/runtime-files"
  mkdir "$image"
  tar --create --directory "$debian" --no-recursion --files-from="$work/runtime-files" \
    | tar --extract --directory "$image"

  # The accounts and groups of distroless' nonroot images.
  cat >"$image/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
  cat >"$image/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
GROUP
  # Names in /etc/hosts first: the compose files map the other services' names there.
  echo 'hosts: files dns' >"$image/etc/nsswitch.conf"
  install -d -m 1777 "$image/tmp"
  install -d -m 700 "$image/root"
  install -d -m 700 -o 65532 -g 65532 "$image/home/nonroot"
  # One status file per package, as distroless keeps them, so that scanners see what is inside.
  install -d "$image/var/lib/dpkg/status.d"
  local package
  for package in "${kept[@]}"; do
    dpkg-query --admindir="$debian/var/lib/dpkg" --status "$package" \
      >"$image/var/lib/dpkg/status.d/$package"
  done

  tar --create --numeric-owner --directory "$image" . >"$work/runtime.tar"
  "$engine" import \
    --change 'USER 65532:65532' \
    --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    "$work/runtime.tar" "$runtime_image" >/dev/null
}

# The toolchain goes to /usr/local, where Rust's own installer puts it, without its HTML
# documentation (most of its size). CARGO_HOME is the rust image's, where the Dockerfile mounts
# its registry cache. The image also trusts the certificate authorities this machine added to
# its own (in /usr/local/share/ca-certificates): where HTTPS leaves through a proxy that signs
# with such an authority, cargo reaches crates.io only with it. The image never leaves the
# machine; the API's runtime image has Debian's authorities only.
build_rust() {
  local local_authorities=/usr/local/share/ca-certificates
  # The hooks run in mmdebstrap's shell, where $1 is the root filesystem.
  # shellcheck disable=SC2016
  mmdebstrap --variant=essential --include=ca-certificates,gcc,libc6-dev,make \
    "${mmdebstrap_options[@]}" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --customize-hook="tar --create --directory '$rust_sysroot' --exclude=./share/doc . | tar --extract --no-same-owner --directory \"\$1/usr/local\"" \
    --customize-hook="if [ -d $local_authorities ]; then cp -R $local_authorities/. \"\$1$local_authorities\" && chroot \"\$1\" update-ca-certificates; fi" \
    --customize-hook='chroot "$1" rustc --version' \
    --format=tar "$suite" "$work/rust.tar" 2>"$work/rust.log" \
    || { cat "$work/rust.log" >&2; return 1; }
  "$engine" import \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$work/rust.tar" "$rust_image" >/dev/null
}

for image in "$runtime_image" "$rust_image"; do
  if ! $rebuild && exists "$image"; then
    log "$image exists, kept (--rebuild makes it again)"
    continue
  fi
  log "making $image from Debian $suite's packages"
  started=$SECONDS
  if [[ $image == "$runtime_image" ]]; then build_runtime; else build_rust; fi
  log "$image made in $((SECONDS - started)) s"
done

echo "$rust_image"
