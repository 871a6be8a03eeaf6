# A tiny offline stand-in for nixpkgs, used only by infra/nix-check/check-flake.sh:
# it provides exactly what flake.nix uses (lib.genAttrs, mkShell and the package
# attributes), so the flake's structure and shellHook are evaluated for real
# without downloading nixpkgs.
{
  outputs = { self }:
    let
      genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      stub = system: name: derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "mkdir -p $out/bin" ];
      };
      packagesFor = system: {
        python311 = stub system "python3-3.11-stand-in";
        python39 = stub system "python3-3.9-stand-in";
        postgresql_16 = stub system "postgresql-16-stand-in";
        redis = stub system "redis-7-stand-in";
        pgbouncer = stub system "pgbouncer-stand-in";
        git = stub system "git-stand-in";
        mkShell = { name ? "nix-shell", packages ? [ ], shellHook ? "", ... }: derivation {
          inherit name system shellHook;
          builder = "/bin/sh";
          args = [ "-c" "echo > $out" ];
          nativeBuildInputs = packages;
        };
      };
    in
    {
      lib = { inherit genAttrs; };
      legacyPackages = genAttrs systems packagesFor;
    };
}
