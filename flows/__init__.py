"""Prefect flows that chain the tasks."""

from mnist.env import apply_defaults

apply_defaults()
