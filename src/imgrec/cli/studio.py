"""`imgrec studio`: the beginner's web app (studio/), started on this machine."""

from __future__ import annotations

import threading
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from imgrec.cli.common import in_range, out, say, with_default

commands = typer.Typer()

DEFAULT_HOME = Path.home() / "imgrec-studio"


@commands.command(
    epilog="Example: imgrec studio --home projects/ --port 9000 --no-browser   (then open "
    "http://127.0.0.1:9000/). Bound to another address than 127.0.0.1 it needs a token: "
    "imgrec studio --host 0.0.0.0 prints a link that carries one."
)
def studio(
    home: Annotated[
        Path,
        typer.Option(
            help="Folder holding the projects (created when missing).",
            show_default="~/imgrec-studio",
        ),
    ] = DEFAULT_HOME,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; any other than 127.0.0.1 requires a token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", callback=in_range(1, 65535))] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="IMGREC_STUDIO_TOKEN",
            help=with_default(
                "Require this token on every request (or env IMGREC_STUDIO_TOKEN).",
                "none on 127.0.0.1; generated and printed on any other address",
            ),
        ),
    ] = None,
    max_upload_mb: Annotated[
        float,
        typer.Option(
            help="Largest request body in MB (one upload batch, one zip); larger gets HTTP 413.",
            callback=in_range(0, low_open=True),
        ),
    ] = 100.0,
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open the page in a web browser.")
    ] = True,
) -> None:
    """A web app: from photos or webcam to a tested, exported model.

    Projects, capture, data checks, training, results, live tries and export, all in the
    browser and all on this machine (docs/studio.md)."""
    from imgrec.serve import ServeSettings
    from imgrec.serve.server import run_server
    from imgrec.studio.app import StudioSettings, create_app
    from imgrec.studio.security import is_loopback, new_token

    if token is None and not is_loopback(host):
        token = new_token()
    settings = StudioSettings(
        home=home.expanduser(), host=host, token=token, max_upload_mb=max_upload_mb
    )
    app = create_app(settings)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    banner = [
        f"imgrec studio: {url}",
        f"projects in {settings.home}; Ctrl-C stops the studio (training jobs keep running).",
    ]
    if browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    run_server(app, host, port, ServeSettings(), banner, say=lambda text: say(text, console=out))
