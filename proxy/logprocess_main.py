"""Entry point of the request-log writer process: `python -m proxy.logprocess_main`.

`proxy.logprocess.LogProcess` starts it with the records on its standard input; see there.
Django is set up before anything imports the log models.
"""

from __future__ import annotations

import asyncio
import os
import signal


def main() -> None:
    # The worker closing the pipe is the only stop signal: a signal to the process group
    # (Ctrl-C, `gateway serve` stopping) must not cut the final flush short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()
    from proxy.logprocess import lower_priority, serve_stdin

    lower_priority()  # before any thread starts: threads inherit it
    asyncio.run(serve_stdin())


if __name__ == "__main__":
    main()
