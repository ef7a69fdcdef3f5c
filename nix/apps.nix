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

  # What the apps of each kind share: functions (nix/scripts/<prelude>.sh, put in front of the
  # app's own script), programs and environment.
  stack = {
    prelude = ./scripts/container-engine.sh;
    runtimeInputs = [ docker-compose ];
    runtimeEnv.RINHA_COMPOSE_FILE = composeFile;
  };
  loadGenerator = {
    prelude = ./scripts/repository.sh;
    runtimeInputs = [ packages.replay ];
    runtimeEnv = {
      RINHA_PAYLOADS = "gatling/resources/pessoas-payloads.tsv";
      RINHA_SEARCH_TERMS = "gatling/resources/termos-busca.tsv";
    };
  };

  # An app running nix/scripts/<script>.sh after its kind's prelude.
  scriptApp =
    script:
    {
      kind,
      description,
      runtimeInputs ? [ ],
      runtimeEnv ? { },
    }:
    let
      program = writeShellApplication {
        name = "rinha-${script}";
        runtimeInputs = kind.runtimeInputs ++ runtimeInputs;
        runtimeEnv = kind.runtimeEnv // runtimeEnv;
        text = lib.concatMapStrings builtins.readFile [
          kind.prelude
          ./scripts/${script}.sh
        ];
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
    kind = stack;
    description = "Load the images and start the compose stack on :9999";
    runtimeEnv.RINHA_IMAGES = toString [
      packages.image-postgres
      packages.image-api
      packages.image-nginx
    ];
  };

  down = {
    kind = stack;
    description = "Stop the compose stack and delete its data";
  };

  stress = {
    kind = loadGenerator;
    description = "Run the contest's Gatling stress test against :9999";
    runtimeInputs = [
      coreutils
      curl
      findutils
      packages.gatling
    ];
    runtimeEnv.RINHA_SIMULATION = "RinhaBackendSimulation";
  };

  replay = {
    kind = loadGenerator;
    description = "Run the Rust replay of the stress test against :9999";
  };
}
