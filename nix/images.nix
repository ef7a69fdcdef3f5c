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

  # Each service runs as an unprivileged account, named in its image's /etc/passwd.
  account =
    {
      name,
      uid,
      home ? "/var/empty",
    }:
    {
      user = "${toString uid}:${toString uid}";
      files = dockerTools.fakeNss.override {
        extraPasswdLines = [
          "${name}:x:${toString uid}:${toString uid}:${name}:${home}:/sbin/nologin"
        ];
        extraGroupLines = [ "${name}:x:${toString uid}:" ];
      };
    };
  # The API's user is the one of docker/Dockerfile's image, distroless' nonroot.
  apiAccount = account {
    name = "nonroot";
    uid = 65532;
    home = "/home/nonroot";
  };
  # PostgreSQL and nginx keep accounts of their own: the compose files set no user, and the
  # database's volume takes the owner of the image's /var/lib/postgresql/data.
  postgresAccount = account {
    name = "postgres";
    uid = 1000;
  };
  nginxAccount = account {
    name = "nginx";
    uid = 1000;
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
    contents = [ apiAccount.files ];
    # The binary at docker/Dockerfile's path; the link keeps rinha in the image's closure.
    extraCommands = ''
      mkdir -p usr/local/bin
      ln -s ${rinha}/bin/rinha usr/local/bin/rinha
    '';
    fakeRootCommands = ''
      mkdir -p home/nonroot tmp
      chown ${apiAccount.user} home/nonroot
      chmod 0700 home/nonroot
      chmod 1777 tmp
    '';
    config = {
      Entrypoint = [ "/usr/local/bin/rinha" ];
      User = apiAccount.user;
      WorkingDir = "/home/nonroot";
      Env = [ "PATH=/usr/local/bin" ];
    };
  };

  postgres = {
    contents = [
      postgresql_15
      postgresEntrypoint
      postgresAccount.files
    ];
    # The data directory (where compose mounts a named volume, which takes this ownership), the
    # socket directory PostgreSQL is built with, and /tmp.
    fakeRootCommands = ''
      mkdir -p var/lib/postgresql/data run/postgresql tmp
      chown -R ${postgresAccount.user} var/lib/postgresql run/postgresql
      chmod 0700 var/lib/postgresql/data
      chmod 1777 tmp
    '';
    config = {
      Entrypoint = [ "/bin/postgres-entrypoint" ];
      Cmd = [ "postgres" ];
      User = postgresAccount.user;
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
      nginxAccount.files
    ];
    # nginx's compiled-in log directory, and /tmp for its temporary files.
    fakeRootCommands = ''
      mkdir -p var/log/nginx tmp
      chown -R ${nginxAccount.user} var/log/nginx
      chmod 1777 tmp
    '';
    config = {
      Cmd = [
        "nginx"
        "-g"
        "daemon off;"
      ];
      User = nginxAccount.user;
      Env = [ "PATH=/bin" ];
    };
  };
}
