#!/usr/bin/env bash
# Makes images from Debian 12's packages, for a machine that has Debian's mirror and crates.io but
# neither Docker Hub nor gcr.io:
#
# - gcr.io/distroless/cc-debian12:nonroot, under the name docker/Dockerfile's runtime stage uses:
#   a local equivalent of that image, the same Debian 12 packages (libc6, libssl3, libgcc-s1,
#   libgomp1, libstdc++6, with the CA bundle, tzdata, netbase and base-files), no shell or
#   package manager, the user nonroot (65532:65532).
# - localhost/rinha-rust-build:<version>-bookworm: Debian 12 with gcc, libc6-dev, make and this
#   machine's Rust toolchain, for the Dockerfile's RUST_IMAGE argument. It is named after the
#   toolchain it holds, not after the public rust image the Dockerfile defaults to.
# - With --postgres TAG and --nginx TAG, the compose files' database and load balancer images:
#   Debian's postgresql-15 and nginx-light on Essential packages only (no apt), each run by its
#   Debian user. `cargo xtask images` passes the tags the compose files give them.
#
# Usage: docker/debian-images.sh [--rebuild] [--postgres TAG] [--nginx TAG]
# A base image that already exists is kept, and so is a service image built from this script and
# entry point as they are now (a label holds their digest), unless --rebuild is given. Progress
# goes to stderr; stdout gets the build image's name, so that CI can run
#   podman build --build-arg RUST_IMAGE="$(bash docker/debian-images.sh)" ...
# CONTAINER_ENGINE=docker|podman chooses the engine (podman by default); run as root, as
# mmdebstrap needs for a root filesystem with its owners.
set -euo pipefail

rebuild=false postgres_image='' nginx_image=''
while (($#)); do
  case "$1" in
    --rebuild) rebuild=true ;;
    --postgres) postgres_image=${2:?--postgres needs a tag} && shift ;;
    --nginx) nginx_image=${2:?--nginx needs a tag} && shift ;;
    *)
      echo "usage: $0 [--rebuild] [--postgres TAG] [--nginx TAG]" >&2
      exit 2
      ;;
  esac
  shift
done
here=$(cd "$(dirname "$0")" && pwd)

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

# The PostgreSQL and nginx images: only Essential packages and the service's own, without
# Recommends, and no apt. The root filesystem only ever becomes a tar stream. mmdebstrap would
# empty /run after the hooks, taking the directories they make there; the setup hook empties it
# instead, first. It runs chrooted, so that user names resolve in the image's passwd.
# Usage: build_service TAG SETUP [MMDEBSTRAP_OPTION...] -- [DOCKERFILE_INSTRUCTION...]
build_service() {
  local tag=$1 setup=$2 options=() changes=() change name
  shift 2
  while [[ $1 != -- ]]; do options+=("$1") && shift; done
  shift
  for change in "$@" "LABEL $inputs_label=$inputs"; do changes+=(--change "$change"); done
  name=${tag//[^a-z0-9]/-}
  # The hooks run in mmdebstrap's shell, where $1 is the root filesystem.
  # shellcheck disable=SC2016
  mmdebstrap --variant=essential "${mmdebstrap_options[@]}" "${options[@]}" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --skip=cleanup/run \
    --customize-hook="chroot \"\$1\" sh -c 'find /run -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} + && $setup'" \
    --format=tar "$suite" "$work/$name.tar" 2>"$work/$name.log" \
    || { cat "$work/$name.log" >&2; return 1; }
  # The image the tag leaves is removed, unless a container still uses it.
  local previous
  previous=$("$engine" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  "$engine" import "${changes[@]}" "$work/$name.tar" "$tag" >/dev/null 2>>"$work/$name.log" \
    || { cat "$work/$name.log" >&2; return 1; }
  if [[ -n $previous ]]; then "$engine" image rm "$previous" >/dev/null 2>&1 || true; fi
}

build_postgres() {
  # LLVM serves only JIT compilation, which the server configuration turns off, and without its
  # provider library PostgreSQL runs without JIT; it is over half the image. Debian's package
  # creates a cluster on installation; the entry point makes its own from the compose file's
  # settings, in PGDATA.
  build_service "$postgres_image" \
    'rm -rf /var/lib/postgresql/15 /etc/postgresql/15 &&
     chmod 755 /usr/local/bin/postgres-entrypoint &&
     install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data &&
     install -d -o postgres -g postgres -m 2775 /run/postgresql' \
    --include=postgresql-15 \
    --dpkgopt='path-exclude=/usr/lib/*/libLLVM-*' \
    --dpkgopt='path-exclude=/usr/lib/*/libz3.so*' \
    --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/llvmjit*' \
    --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/bitcode/*' \
    --customize-hook="upload $here/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint" \
    -- \
    'USER postgres' \
    'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin' \
    'ENV PGDATA=/var/lib/postgresql/data' \
    'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]' \
    'CMD ["postgres"]' \
    'STOPSIGNAL SIGINT' \
    'EXPOSE 5432'
}

build_nginx() {
  # The master runs as www-data: its temp and log directories are its own. The compose files put
  # its pid file in /tmp. SIGQUIT is the graceful shutdown: finish the requests in flight.
  build_service "$nginx_image" \
    'install -d -o www-data -g www-data /var/lib/nginx /var/log/nginx' \
    --include=nginx-light \
    -- \
    'USER www-data' \
    'CMD ["nginx", "-g", "daemon off;"]' \
    'STOPSIGNAL SIGQUIT' \
    'EXPOSE 9999'
}

inputs_label=org.rinha.inputs
inputs=$(cat "$0" "$here/postgres-entrypoint.sh" | sha256sum | cut -d ' ' -f 1)

# Whether image $1 must be made: it is missing, or is a service image ($2 = service) made from
# other inputs, or --rebuild was given.
stale() {
  $rebuild && return 0
  exists "$1" || return 0
  [[ -n ${2-} ]] || return 1
  [[ $("$engine" image inspect --format "{{ index .Config.Labels \"$inputs_label\" }}" "$1") != "$inputs" ]]
}

for build in runtime:"$runtime_image" rust:"$rust_image" postgres:"$postgres_image" nginx:"$nginx_image"; do
  kind=${build%%:*} image=${build#*:} service=
  [[ -n $image ]] || continue
  [[ $kind == postgres || $kind == nginx ]] && service=$kind
  if ! stale "$image" "$service"; then
    log "$image is up to date, kept (--rebuild makes it again)"
    continue
  fi
  log "making $image from Debian $suite's packages"
  started=$SECONDS
  "build_$kind"
  log "$image made in $((SECONDS - started)) s"
done

echo "$rust_image"
