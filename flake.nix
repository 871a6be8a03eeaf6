{
  description = "Jarvis dev shell: Python 3.11 (the code), Python 3.9 (Pants 2.17), PostgreSQL 16, Redis 7";

  # nixos-24.11 is the last release with python39, which Pants 2.17 needs.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      forAllSystems = nixpkgs.lib.genAttrs [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
    in
    {
      devShells = forAllSystems (system:
        let pkgs = nixpkgs.legacyPackages.${system};
        in {
          default = pkgs.mkShell {
            name = "jarvis-dev";
            packages = [
              pkgs.python311
              pkgs.python39
              pkgs.postgresql_16
              pkgs.redis
              pkgs.pgbouncer
              pkgs.git
            ];
            shellHook = ''
              export JARVIS_DEV_DIR="$PWD/.dev"
              export PANTS_PYTHON="${pkgs.python39}/bin/python3.9"
              export DATABASE_URL="postgresql://jarvis@127.0.0.1:55432/jarvis"
              export REDIS_URL="redis://127.0.0.1:56379/0"
              echo "Jarvis dev shell: Python 3.11, Python 3.9 for Pants, PostgreSQL 16, Redis 7."
              echo "  start local services:  infra/dev-services.sh up    (data in .dev/; stop: down)"
              echo "  DATABASE_URL=$DATABASE_URL  REDIS_URL=$REDIS_URL"
              echo "  then: ./pants test ::   or   ./pants run src/python/jarvis/cli:jarvis -- demo"
            '';
          };
        });
    };
}
