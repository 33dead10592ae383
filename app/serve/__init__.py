"""Serve a registered model over HTTP: prediction API, model info, health, a drawing page.

The model is looked up by reference (`models:/NAME@ALIAS` by default); an alias is resolved
to a version, and that exact version is loaded, so every answer names the version that gave
it. A poller (and `POST /reload`) picks up a moved alias without a restart. The modules, by
concern: `app` (the routes), `parsing` (request bodies), `holder` (the model in service),
`feedback` (storing corrected labels), `admin` (the token of /reload), `errors`.
"""

from app.serve.app import create_app
from app.serve.errors import RequestError
from app.serve.feedback import FeedbackDesk
from app.serve.holder import ModelHolder
from app.serve.parsing import json_pixels

__all__ = ["FeedbackDesk", "ModelHolder", "RequestError", "create_app", "json_pixels"]
