"""`mnist monitor`: the monitor flow on one window of served predictions; the verdict in one
line, or (`--json`) the whole report."""

from __future__ import annotations

import argparse

from app.cli.options import add_command, settings
from app.cli.prefect_setup import start_prefect
from mnist.settings import DatastoreSettings, MonitorSettings, RegistrySettings


def monitor(args: argparse.Namespace) -> None:
    chosen = settings(args, MonitorSettings)
    name = settings(args, RegistrySettings).registered_model
    store = settings(args, DatastoreSettings).datastore
    api_started = start_prefect()
    import keras  # noqa: F401  (for the champion, while the temporary API starts)
    from prefect import tags

    from flows.monitor import monitor_flow

    api_started()
    with tags("mnist", "monitor", f"model:{name}"):
        report = monitor_flow(chosen, name, store)
    print(report.to_json() if args.json else report.line())


def add_parsers(commands: argparse._SubParsersAction) -> None:
    command = add_command(
        commands,
        "monitor",
        monitor,
        "judge a window of served predictions against the champion: ok, drift or too few",
        MonitorSettings,
        RegistrySettings,
        DatastoreSettings,
    )
    command.add_argument("--json", action="store_true", help="print the whole report as JSON")
