"""`mnist serve`: the HTTP service (`app.serve`) under uvicorn. With `--runtime onnx` (or
`auto` on a version that has an ONNX copy) the server never imports TensorFlow."""

from __future__ import annotations

import argparse

from app.cli.options import add_command, settings
from mnist.settings import DatastoreSettings, ServeSettings


def serve(args: argparse.Namespace) -> None:
    chosen = settings(args, ServeSettings)
    import uvicorn

    from app.serve import create_app

    store = settings(args, DatastoreSettings).datastore
    app = create_app(chosen, store)
    holder = app.state.holder
    holder.refresh()  # no model, no server: one line, before uvicorn starts
    runtime = holder.current()[0].runtime
    print(
        f"serving {chosen.model} on http://{chosen.host}:{chosen.port}/ (runtime {runtime})",
        flush=True,
    )
    from mnist import datastore

    where = datastore.safe_url(store or datastore.default_url())
    if chosen.feedback:
        trust = "trusted with the feedback token, else " if chosen.feedback_token else ""
        print(f"feedback (POST /feedback) is stored in {where} ({trust}pending)", flush=True)
    if chosen.prediction_log:
        print(
            f"predictions are logged in {where}: images of {chosen.log_images:.0%} of them "
            f"and of answers below {chosen.log_confidence:g} confidence, kept "
            f"{chosen.log_days} days",
            flush=True,
        )
    # On Ctrl-C or SIGTERM uvicorn stops gracefully, then raises the signal again: `main`
    # reports it in one line (`uvicorn.run` would swallow a Ctrl-C and exit 0).
    config = uvicorn.Config(app, chosen.host, chosen.port, log_level=chosen.log_level)
    uvicorn.Server(config).run()


def add_parsers(commands: argparse._SubParsersAction) -> None:
    add_command(
        commands,
        "serve",
        serve,
        "serve a model: REST API and a draw-a-digit page",
        ServeSettings,
        DatastoreSettings,
    )
