# `nix run .#<app>`: bring the compose stack up or down, and load it with Gatling or the replay.
{
  lib,
  writeShellApplication,
  coreutils,
  curl,
  docker-compose,
  findutils,
  packages,
}:
let
  # The compose files and the configuration they mount, copied to the store together.
  composeFile = "${../docker}/compose.yml";

  # An app running nix/scripts/<script>.sh. The stack's scripts start with the functions of
  # nix/scripts/container-engine.sh.
  scriptApp =
    script:
    {
      description,
      runtimeInputs,
      runtimeEnv ? { },
      usesContainerEngine ? false,
    }:
    let
      program = writeShellApplication {
        name = "rinha-${script}";
        inherit runtimeInputs runtimeEnv;
        text = lib.concatMapStrings builtins.readFile (
          lib.optional usesContainerEngine ./scripts/container-engine.sh ++ [ ./scripts/${script}.sh ]
        );
      };
    in
    {
      type = "app";
      program = lib.getExe program;
      meta = { inherit description; };
    };
in
lib.mapAttrs scriptApp {
  up = {
    description = "Load the images and start the compose stack on :9999";
    runtimeInputs = [ docker-compose ];
    runtimeEnv = {
      RINHA_COMPOSE_FILE = composeFile;
      RINHA_IMAGES = toString [
        packages.image-postgres
        packages.image-api
        packages.image-nginx
      ];
    };
    usesContainerEngine = true;
  };

  down = {
    description = "Stop the compose stack and delete its data";
    runtimeInputs = [ docker-compose ];
    runtimeEnv.RINHA_COMPOSE_FILE = composeFile;
    usesContainerEngine = true;
  };

  stress = {
    description = "Run the contest's Gatling stress test against :9999";
    runtimeInputs = [
      coreutils
      curl
      findutils
      packages.gatling
      packages.replay
    ];
    runtimeEnv.RINHA_SIMULATION = "RinhaBackendSimulation";
  };

  replay = {
    description = "Run the Rust replay of the stress test against :9999";
    runtimeInputs = [ packages.replay ];
  };
}
