# The flake evaluated against stand-ins for nixpkgs, for `cargo xtask check-delivery`: the
# modules, arguments and attributes the flake wires together are all evaluated, and only
# nixpkgs' builders are replaced, by functions that force their arguments and return a named
# store path. A misspelt attribute, a missing argument or a path to a missing file fails here
# rather than on a user's `nix run`; package names cannot be checked, since any name a module
# asks for gets a stand-in. Yields the outputs' names, the images' `name:tag`, and each app's
# script as assembled for writeShellApplication.
# `repository` is the repository's absolute path.
{ repository }:
let
  root = /. + repository;
  flake = import (root + "/flake.nix");
  systems = [
    "x86_64-linux"
    "aarch64-linux"
    "x86_64-darwin"
    "aarch64-darwin"
  ];

  package = name: {
    inherit name;
    outPath = "/nix/store/stand-in-${name}";
    override = _: package name;
  };
  built = name: args: builtins.deepSeq args (package name // { inherit args; });

  # The nixpkgs lib functions the flake uses, written with builtins.
  lib = {
    genAttrs =
      names: f:
      builtins.listToAttrs (
        map (name: {
          inherit name;
          value = f name;
        }) names
      );
    optionalAttrs = condition: set: if condition then set else { };
    optional = condition: item: if condition then [ item ] else [ ];
    concatMapStrings = f: list: builtins.concatStringsSep "" (map f list);
    getExe = program: "${program}/bin/${program.name}";
    inherit (builtins) mapAttrs;
    mapAttrs' =
      f: set: builtins.listToAttrs (map (name: f name set.${name}) (builtins.attrNames set));
    nameValuePair = name: value: { inherit name value; };
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    licenses.mit = "MIT";
    fileset = {
      unions = map (
        path: if builtins.pathExists path then path else throw "${toString path} does not exist"
      );
      toSource = { root, fileset }: builtins.deepSeq fileset root;
    };
  };

  pkgsFor =
    system:
    let
      pkgs = {
        inherit lib;
        stdenv.hostPlatform = {
          inherit system;
          isLinux = builtins.match ".*-linux" system != null;
        };
        callPackage =
          path: given:
          let
            module = import path;
            stands = builtins.mapAttrs (name: _: pkgs.${name} or (package name)) (
              builtins.functionArgs module
            );
          in
          module (stands // given);
        dockerTools = {
          fakeNss = package "fake-nss";
          streamLayeredImage = args: built "${args.name}:${args.tag}" args;
        };
        fetchzip = built "fetchzip";
        jdk17_headless = package "jdk" // {
          home = "/nix/store/stand-in-jdk/lib/openjdk";
        };
        mkShell = built "shell";
        postgresql_15 = package "postgresql" // {
          pg_config = package "pg_config";
        };
        rustPlatform = {
          buildRustPackage = args: built args.pname args;
          rustLibSrc = package "rust-lib-src";
        };
        writeShellApplication = args: built args.name args;
      };
    in
    pkgs;

  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs systems pkgsFor;
  };
  outputs = flake.outputs {
    self = outputs;
    inherit nixpkgs;
  };
  names = builtins.mapAttrs (_: builtins.mapAttrs (_: builtins.attrNames));
  # The apps once more, with getExe returning the program itself so its script is at hand.
  apps = (pkgsFor "x86_64-linux").callPackage (root + "/nix/apps.nix") {
    lib = lib // {
      getExe = program: program;
    };
    packages = outputs.packages.x86_64-linux;
  };
in
builtins.deepSeq outputs {
  outputs = names { inherit (outputs) packages apps devShells checks; };
  images = map (name: outputs.packages.x86_64-linux.${name}.name) [
    "image-api"
    "image-postgres"
    "image-nginx"
  ];
  scripts = builtins.mapAttrs (_: app: app.program.args.text) apps;
}
