# `nix develop`: the toolchain and every program the native stack, the stress test and the
# compose stack call.
{
  mkShell,
  cargo,
  rustc,
  clippy,
  rustfmt,
  rust-analyzer,
  rustPlatform,
  rust-jemalloc-sys-unprefixed,
  postgresql_15,
  nginx,
  oha,
  docker-compose,
  podman,
  gatling,
}:
mkShell {
  packages = [
    cargo
    rustc
    clippy
    rustfmt
    rust-analyzer
    postgresql_15
    nginx
    gatling
    oha
    docker-compose
    podman
  ];
  # Its setup hook points tikv-jemalloc-sys at this jemalloc, as in the package build.
  buildInputs = [ rust-jemalloc-sys-unprefixed ];
  # rust-analyzer reads the standard library's sources from here.
  RUST_SRC_PATH = "${rustPlatform.rustLibSrc}";
}
