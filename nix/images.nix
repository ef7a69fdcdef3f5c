# The compose stack's OCI images, streamed into `docker load` or `podman load` by `nix run .#up`.
# docker/compose.yml names them by exactly these names and tag.
{
  lib,
  dockerTools,
  writeShellApplication,
  coreutils,
  glibcLocales,
  nginx,
  postgresql_15,
  rinha,
}:
let
  tag = "local";

  # Every service runs as this unprivileged account, named in the image's /etc/passwd.
  uid = 1000;
  user = "${toString uid}:${toString uid}";
  account =
    name:
    dockerTools.fakeNss.override {
      extraPasswdLines = [ "${name}:x:${toString uid}:${toString uid}:${name}:/var/empty:/bin/false" ];
      extraGroupLines = [ "${name}:x:${toString uid}:" ];
    };

  # The native stack's clusters use C.UTF-8 too: UTF-8 text with byte-order collation, the same
  # in every stack. Nix's glibc reads locales from LOCALE_ARCHIVE only.
  locales = glibcLocales.override {
    allLocales = false;
    locales = [ "C.UTF-8/UTF-8" ];
  };

  postgresEntrypoint = writeShellApplication {
    name = "postgres-entrypoint";
    runtimeInputs = [
      coreutils
      postgresql_15
    ];
    text = builtins.readFile ../docker/postgres-entrypoint.sh;
  };

  image =
    name: args:
    dockerTools.streamLayeredImage (
      {
        name = "rinha-${name}";
        inherit tag;
      }
      // args
    );
in
lib.mapAttrs' (name: value: lib.nameValuePair "image-${name}" (image name value)) {
  api = {
    contents = [
      rinha
      (account "rinha")
    ];
    config = {
      Entrypoint = [ "/bin/rinha" ];
      User = user;
      Env = [ "PATH=/bin" ];
    };
  };

  postgres = {
    contents = [
      postgresql_15
      postgresEntrypoint
      (account "postgres")
    ];
    # The data directory (where compose mounts a named volume, which takes this ownership), the
    # socket directory PostgreSQL is built with, and /tmp.
    fakeRootCommands = ''
      mkdir -p var/lib/postgresql/data run/postgresql tmp
      chown -R ${user} var/lib/postgresql run/postgresql
      chmod 0700 var/lib/postgresql/data
      chmod 1777 tmp
    '';
    config = {
      Entrypoint = [ "/bin/postgres-entrypoint" ];
      Cmd = [ "postgres" ];
      User = user;
      Env = [
        "PATH=/bin"
        "PGDATA=/var/lib/postgresql/data"
        "LOCALE_ARCHIVE=${locales}/lib/locale/locale-archive"
      ];
      # A fast shutdown: roll back open transactions instead of waiting for clients to leave.
      StopSignal = "SIGINT";
    };
  };

  nginx = {
    contents = [
      nginx
      (account "nginx")
    ];
    # nginx's compiled-in log directory, and /tmp for its temporary files.
    fakeRootCommands = ''
      mkdir -p var/log/nginx tmp
      chown -R ${user} var/log/nginx
      chmod 1777 tmp
    '';
    config = {
      Cmd = [
        "nginx"
        "-g"
        "daemon off;"
      ];
      User = user;
      Env = [ "PATH=/bin" ];
    };
  };
}
