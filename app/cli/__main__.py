"""`python -m app.cli`: the `mnist` command."""

from app.cli import run

if __name__ == "__main__":
    run()
