{
  description = "The Rinha de Backend 2023 Q3 people API: warp over PostgreSQL, two replicas behind nginx";

  inputs.nixpkgs.url = "github:nixos/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # The images and the stack they form are Linux only; macOS gets the packages, the stress
      # test and the development shell.
      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      systems = linuxSystems ++ [
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forEachSystem = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      isLinux = pkgs: pkgs.stdenv.hostPlatform.isLinux;
      crates = pkgs: pkgs.callPackage ./nix/package.nix { };
    in
    {
      packages = forEachSystem (
        pkgs:
        let
          inherit (crates pkgs) rinha replay;
        in
        {
          inherit rinha replay;
          default = rinha;
          gatling = pkgs.callPackage ./nix/gatling.nix { };
        }
        // lib.optionalAttrs (isLinux pkgs) (pkgs.callPackage ./nix/images.nix { inherit rinha; })
      );

      apps = forEachSystem (
        pkgs:
        let
          packages = self.packages.${pkgs.stdenv.hostPlatform.system};
          apps = pkgs.callPackage ./nix/apps.nix { inherit packages; };
        in
        if isLinux pkgs then apps else removeAttrs apps [ "up" "down" ]
      );

      devShells = forEachSystem (pkgs: {
        default = pkgs.callPackage ./nix/shell.nix {
          inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) gatling;
        };
      });

      checks = forEachSystem (
        pkgs:
        let
          packages = self.packages.${pkgs.stdenv.hostPlatform.system};
        in
        {
          inherit (packages) rinha replay;
        }
        // (crates pkgs).checks
      );
    };
}
