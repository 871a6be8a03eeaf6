"""`jarvis keys ...`: the Ed25519 key that signs audit checkpoints.

The key lives outside PostgreSQL (JARVIS_SIGNING_KEY, default <data dir>/keys/checkpoint.key)
so that a database superuser who rewrites the audit chain cannot re-sign it.
"""

from __future__ import annotations

import typer

from jarvis.cache import CacheKeyError, cache_key_path, ensure_cache_key
from jarvis.cli.session import ExitCode, console, fail, print_json, settings_or_exit
from jarvis.witness import WitnessError, generate_key, load_public_key

app = typer.Typer(help="The key that signs audit checkpoints (kept outside PostgreSQL).", no_args_is_help=True)


@app.command("init")
def init_command(
    force: bool = typer.Option(False, "--force", help="Replace an existing key (its checkpoints need the old .pub)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Create the signing key (0600) and its public key (.pub); exit 2 if one exists and --force is not given.

    Also creates the Redis authentication key (JARVIS_CACHE_KEY) if it is missing; an existing one is kept.
    """
    settings = settings_or_exit()
    try:
        ensure_cache_key(settings)
    except CacheKeyError as error:
        fail(str(error), ExitCode.BAD_INPUT)
    cache_path = cache_key_path(settings)
    private_path = settings.signing_key_path()
    if private_path.exists() and not force:
        fail(
            f"a signing key already exists at {private_path}; keep it (`jarvis keys show`), or replace it with "
            f"`jarvis keys init --force` (checkpoints it signed then verify only with {settings.public_key_path()})",
            ExitCode.BAD_INPUT,
        )
    try:
        public_path = generate_key(private_path, overwrite=force)
        public_key = load_public_key(public_path)
    except WitnessError as error:
        fail(str(error), ExitCode.BAD_INPUT)
    if as_json:
        print_json(
            {
                "private_key": str(private_path),
                "public_key": str(public_path),
                "key_id": public_key.key_id,
                "cache_key": str(cache_path),
            }
        )
        return
    console.print(f"private key  {private_path}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"public key   {public_path}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"key id       {public_key.key_id}", highlight=False)
    console.print(f"cache key    {cache_path}", highlight=False, markup=False, soft_wrap=True)
    console.print("Keep the private key off the database host and back it up; share the .pub with verifiers.")


@app.command("show")
def show_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Print the public key's path and key id (exit 4 if there is no key yet)."""
    settings = settings_or_exit()
    public_path = settings.public_key_path()
    if not public_path.exists():
        fail(f"no public key at {public_path}; create a key with `jarvis keys init`", ExitCode.NOT_FOUND)
    try:
        public_key = load_public_key(public_path)
    except WitnessError as error:
        fail(str(error), ExitCode.BAD_INPUT)
    if as_json:
        print_json({"public_key": str(public_path), "key_id": public_key.key_id})
        return
    console.print(f"public key   {public_path}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"key id       {public_key.key_id}", highlight=False)
