"""The `mnist` command line: parses arguments, calls flows and library functions, prints.

Each command's options are built from the settings classes of `mnist.settings`
(`app.cli.options`), so a setting has one name, one default and one help text everywhere.
One module per command group (`training`, `registry`, `predict`, `data`, `serve`, `admin`);
`main` assembles them. Heavy libraries (TensorFlow, Prefect) are imported only by the commands
that need them.
"""

from app.cli.main import main, parser, run

__all__ = ["main", "parser", "run"]
