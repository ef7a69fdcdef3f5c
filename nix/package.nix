# The workspace's crates, built from Cargo.lock with nixpkgs' Rust toolchain, and the checks that
# need the same vendored sources: formatting, clippy and the integration tests.
{
  lib,
  rustPlatform,
  clippy,
  rustfmt,
  postgresql_15,
  nginx,
  kubectl,
  rust-jemalloc-sys-unprefixed,
}:
let
  manifest = (lib.importTOML ../Cargo.toml).package;

  # Only what cargo reads, so editing the other files does not rebuild the crates: the crates,
  # and the files their code and tests include (the nginx config the native stack derives its
  # own from, the contest's search terms).
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../.cargo
      ../benches
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../sql
      ../tests
      ../xtask
      ../gatling/replay
      ../gatling/resources/termos-busca.tsv
      ../docker/nginx.conf
      # The topology and limits xtask's tests read, and the Kubernetes overlays they render
      # (the contest's reads the PostgreSQL configuration); the dashboard and alert rules the
      # integration tests hold to the exported metrics.
      ../docker/compose.yml
      ../docker/postgresql.conf
      ../deploy
    ];
  };

  buildWorkspaceCrate =
    args:
    rustPlatform.buildRustPackage (
      {
        inherit src;
        inherit (manifest) version;
        cargoLock.lockFile = ../Cargo.lock;
        # tikv-jemalloc-sys links this prebuilt jemalloc (through JEMALLOC_OVERRIDE, set by its
        # setup hook) instead of building its vendored copy, which breaks under Nix. The
        # unprefixed variant matches the service's `unprefixed_malloc_on_supported_platforms`.
        buildInputs = [ rust-jemalloc-sys-unprefixed ];
      }
      // args
    );

  # A check that runs one command over the vendored workspace; its output is an empty marker.
  verifyWorkspace =
    name: args:
    buildWorkspaceCrate (
      {
        pname = "rinha-${name}";
        installPhase = "mkdir $out";
      }
      // args
    );
in
{
  rinha = buildWorkspaceCrate {
    pname = "rinha";
    cargoBuildFlags = [
      "--package"
      "rinha"
    ];
    # The tests need a PostgreSQL server: `checks.integration` runs them.
    doCheck = false;
    meta = {
      inherit (manifest) description;
      license = lib.licenses.mit;
      mainProgram = "rinha";
    };
  };

  replay = buildWorkspaceCrate {
    pname = "replay";
    cargoBuildFlags = [
      "--package"
      "replay"
    ];
    doCheck = false;
    meta = {
      description = "The contest's stress test replayed in Rust";
      license = lib.licenses.mit;
      mainProgram = "replay";
    };
  };

  checks = {
    fmt = verifyWorkspace "fmt" {
      nativeBuildInputs = [ rustfmt ];
      buildPhase = ''
        runHook preBuild
        cargo fmt --all --check
        runHook postBuild
      '';
      doCheck = false;
    };

    clippy = verifyWorkspace "clippy" {
      nativeBuildInputs = [ clippy ];
      buildPhase = ''
        runHook preBuild
        cargo clippy --workspace --all-targets --locked --offline -- --deny warnings
        runHook postBuild
      '';
      doCheck = false;
    };

    # The whole workspace's tests. Without DATABASE_URL the test harness starts a throwaway
    # PostgreSQL cluster of its own, as the unprivileged build user, from the server programs in
    # `pg_config --bindir`.
    integration = verifyWorkspace "integration" {
      dontBuild = true;
      checkType = "debug";
      cargoTestFlags = [ "--workspace" ];
      nativeCheckInputs = [
        postgresql_15
        postgresql_15.pg_config
        # tests/api/nginx.rs runs docker/nginx.conf in front of two replicas.
        nginx
        # xtask's tests render deploy/kubernetes with kubectl's kustomize.
        kubectl
      ];
    };
  };
}
