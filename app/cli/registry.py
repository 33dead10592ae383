"""`mnist registry`: the versions of a registered model, its champion, their history and
their model cards."""

from __future__ import annotations

import argparse

from app.cli.options import add_command, settings
from mnist.errors import MnistError
from mnist.settings import CHAMPION, RegistrySettings


def registry_command(args: argparse.Namespace) -> None:
    from mnist import registry

    name = settings(args, RegistrySettings).registered_model
    if args.action == "list":
        import pandas as pd

        rows = [
            {
                "version": v.version,
                "aliases": ",".join(v.aliases) or "-",
                "test_accuracy": v.tags.get("test_accuracy", "-"),
                "decision": v.tags.get("decision", "-"),
                "run_id": v.run_id,
                "created": v.created.strftime("%Y-%m-%d %H:%M:%S"),
            }
            for v in registry.versions(name)
        ]
        print(pd.DataFrame(rows).to_string(index=False) if rows else f"{name}: no versions")
    elif args.action == "show":
        if args.version and args.alias:
            raise MnistError("give a VERSION or --alias, not both")
        alias = args.alias if args.alias or args.version else CHAMPION
        v = registry.get(name, args.version, alias)
        print(f"{v.name} v{v.version}  aliases: {', '.join(v.aliases) or '-'}")
        print(f"uri:      {v.uri}\nrun:      {v.run_id}\nsource:   {v.source}")
        print(f"created:  {v.created:%Y-%m-%d %H:%M:%S %Z}")
        for key in sorted(v.tags):
            print(f"{key + ':':22}{v.tags[key]}")
    elif args.action == "promote":
        v = registry.promote(args.version, name, args.reason or "promoted by hand")
        print(f"champion is now {name} v{v.version}")
    elif args.action == "rollback":
        v = registry.rollback(name)
        print(f"rolled back: champion is now {name} v{v.version}")
    elif args.action == "card":
        print(card_text(name, args.version, rewrite=args.rewrite))
    elif args.action == "history":
        events = registry.history(name)
        if events.empty:
            print(f"{name}: no champion history yet")
        else:
            events["time"] = events["time"].dt.strftime("%Y-%m-%d %H:%M:%S")
            print(events.to_string(index=False))


def _no_card(state: str | None) -> str:
    """Why a version has no card, from its tag `card`."""
    if state is None:
        return "registered before model cards were written"
    if state == "pending":
        return "its card was never written: the run ended before it (pending)"
    if state.startswith("no: "):
        return f"writing it failed: {state.removeprefix('no: ')}"
    return state


def card_text(name: str, version: str | None, rewrite: bool = False) -> str:
    """The model card of `name` v`version` (default: the champion): the whole card file
    (`card/vN.md`), else the registry's description (which may be shortened). `rewrite`
    first renders it again from its stored facts and the version's current tags."""
    from mnist import card_store, registry
    from mnist.tracking import call, client

    v = registry.get(name, version, None if version else CHAMPION)
    if rewrite:
        return card_store.rewrite(v).rstrip("\n")
    state = v.tags.get("card")
    text = None
    if state is not None and state.startswith("yes: "):
        try:
            text = card_store.read(v.run_id, state.removeprefix("yes: "))
        except MnistError:  # gone or unreadable: the registry's view still serves
            text = None
    if not text:
        text = call(client().get_model_version, v.name, v.version).description
    if not text:
        raise MnistError(f"{name} v{v.version} has no model card: {_no_card(state)}")
    return text.rstrip("\n")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    reg = add_command(
        commands,
        "registry",
        registry_command,
        "the MLflow model registry: versions, champion, history",
        RegistrySettings,
    )
    actions = reg.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every version, newest first")
    show = actions.add_parser("show", help="one version (default: the champion)")
    show.add_argument("version", nargs="?", help="version number")
    show.add_argument("--alias", help="look the version up by alias")
    promote = actions.add_parser("promote", help="make VERSION the champion")
    promote.add_argument("version")
    promote.add_argument("--reason", help="why (kept in the history)")
    actions.add_parser("rollback", help="give champion back to the previous holder")
    actions.add_parser("history", help="every gate decision and champion move")
    card = actions.add_parser("card", help="the model card of VERSION (default: the champion)")
    card.add_argument("version", nargs="?", help="version number")
    card.add_argument(
        "--rewrite",
        action="store_true",
        help="render it again from its stored facts and current tags (no evaluation)",
    )
