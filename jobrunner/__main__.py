"""Entry point of a runner process: ``python -m jobrunner``.

Reads the settings from the environment, configures logging and runs the
loop (which first applies pending migrations unless MIGRATE_ON_START=false)
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import sys

from jobrunner.runner import Runner
from jobrunner.settings import Settings


def main() -> int:
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )
    if not settings.database_url:
        logging.getLogger("jobrunner").error("DATABASE_URL is not set")
        return 2
    runner = Runner(settings)
    runner.install_signal_handlers()
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
