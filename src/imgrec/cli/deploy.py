"""Commands that put a model to work elsewhere: serve, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgrec.cli.common import EngineChoice, existing_model, in_range, out, say, with_default
from imgrec.errors import ImgrecError

commands = typer.Typer()


# imgrec.export.FORMATS (that module loads torch; a test checks they agree). A plain string,
# not a choice: an unknown format ends in export's own one-line error.
EXPORT_FORMATS = ("onnx", "torchscript")


@commands.command(
    epilog="Example: IMGREC_KEY=s3cret imgrec serve runs/train/model.imgrec --port 8000 "
    "--api-key-env IMGREC_KEY   (then open http://127.0.0.1:8000/ or /docs)"
)
def serve(
    model_file: Annotated[
        Path, typer.Argument(callback=existing_model, help="A model.imgrec file.")
    ],
    host: Annotated[
        str, typer.Option(help="Address to listen on; keep 127.0.0.1 behind a reverse proxy.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", callback=in_range(1, 65535))] = 8000,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "Require header X-API-Key equal to this environment variable's value.",
                "none, no key needed",
            )
        ),
    ] = None,
    max_upload_mb: Annotated[
        float,
        typer.Option(
            help="Largest request body in MB; larger ones get HTTP 413.",
            callback=in_range(0, low_open=True),
        ),
    ] = 20.0,
    engine: Annotated[
        EngineChoice,
        typer.Option(help="Forward pass: onnx (ONNX Runtime), torch, or auto (onnx if installed)."),
    ] = EngineChoice.auto,
    min_confidence: Annotated[
        float,
        typer.Option(
            help="Default minimum confidence: below it the answer is 'unknown' (0 = always "
            "answer); a request may set its own with the min_confidence field."
        ),
    ] = 0.0,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help=with_default(
                "Record every prediction in this SQLite file (for `imgrec drift`).", "off"
            ),
        ),
    ] = None,
    store_images: Annotated[
        Path | None,
        typer.Option(
            help=with_default(
                "With --log: also keep each image in this folder, all metadata (EXIF, GPS) "
                "removed. Off by default: uploads are private.",
                "off",
            )
        ),
    ] = None,
    log_max_rows: Annotated[
        int | None,
        typer.Option(
            help=with_default("With --log: keep only the newest N rows.", "no limit"),
            callback=in_range(1),
        ),
    ] = None,
    log_max_days: Annotated[
        float | None,
        typer.Option(
            help=with_default("With --log: delete rows older than D days.", "no limit"),
            callback=in_range(0, low_open=True),
        ),
    ] = None,
    max_request_megapixels: Annotated[
        float,
        typer.Option(
            help="Most pixels one request's images may decode to (read from their headers "
            "first; JPEGs count at the reduced size they decode at); more gets HTTP 413. Also "
            "the most decoding at once across requests.",
            callback=in_range(0, low_open=True),
        ),
    ] = 100.0,
    max_connections: Annotated[
        int,
        typer.Option(
            help="Open connections at once; one more gets HTTP 503 and is closed (lowered to "
            "fit the process's file limit, ulimit -n).",
            callback=in_range(1),
        ),
    ] = 256,
    timeout_keep_alive: Annotated[
        float,
        typer.Option(
            help="Seconds a connection may wait before sending a complete request (after "
            "opening or after its last answer); then it is closed.",
            callback=in_range(0, low_open=True),
        ),
    ] = 5.0,
    backlog: Annotated[
        int,
        typer.Option(
            help="Connections the kernel queues before the server accepts them.",
            callback=in_range(1),
        ),
    ] = 2048,
) -> None:
    """Serve a model over HTTP: JSON API (/v1/predict), web page (/), docs, /metrics."""
    import os

    from imgrec.infer.predict import check_min_confidence
    from imgrec.serve.server import listen, run_server
    from imgrec.serve.settings import ServeSettings

    check_min_confidence(min_confidence)
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env, "")
        if not api_key:
            raise ImgrecError(
                f"--api-key-env {api_key_env}: that environment variable is not set or empty."
            )
    settings = ServeSettings(
        api_key=api_key,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        engine=engine.value,
        min_confidence=min_confidence,
        log=log,
        store_images=store_images,
        log_max_rows=log_max_rows,
        log_max_days=log_max_days,
        max_request_pixels=int(max_request_megapixels * 1e6),
        max_connections=max_connections,
        timeout_keep_alive_s=timeout_keep_alive,
        backlog=backlog,
    )
    # the port first: a wrong --host or a port in use is said at once, not after the model
    # and its engine load (seconds)
    sock = listen(host, port, backlog)
    try:
        from imgrec.serve import create_app

        web_app = create_app(model_file, settings)
    except BaseException:
        sock.close()
        raise
    banner = [f"serving {model_file} on http://{host}:{port}/  (API docs at /docs)"]
    if log is not None:
        kept = f"; image copies in {store_images}" if store_images else ""
        banner.append(f"logging predictions to {log}{kept}")
    run_server(
        web_app,
        host,
        port,
        settings,
        banner,
        say=lambda text: say(text, console=out),
        sock=sock,
    )


@commands.command(
    "export",
    epilog="Example: imgrec export runs/train/model.imgrec --format onnx --int8 "
    "--calibration photos/val",
)
def export_command(
    model_file: Annotated[
        Path, typer.Argument(callback=existing_model, help="A model.imgrec file.")
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="onnx (fp32, or int8 with --int8) or torchscript.",
            metavar=f"<{'|'.join(EXPORT_FORMATS)}>",
        ),
    ] = EXPORT_FORMATS[0],
    int8: Annotated[
        bool,
        typer.Option(
            "--int8", help=with_default("ONNX only: static int8 quantisation (QDQ).", "off")
        ),
    ] = False,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=with_default(
                "File to write.", "next to the model: model.onnx, model.int8.onnx or model.pt"
            ),
        ),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            help=with_default(
                "Labelled images (folder or CSV) for the parity check and int8 calibration.",
                "the bundled ants/bees sample",
            )
        ),
    ] = None,
) -> None:
    """Export a model to ONNX (fp32 or int8) or TorchScript, checked against PyTorch.

    The check runs both on real images; its figures go to <out>.parity.json.
    """
    from imgrec.export import export_model

    result = export_model(
        model_file,
        fmt,
        out_file,
        int8=int8,
        calibration=calibration,
        say=lambda text: say(text, console=out),
    )
    p = result.parity["parity"]
    line = (
        f"parity on {p['images']} images: max |diff| {p['max_abs_diff']:.2e}, "
        f"top-1 agreement {p['top1_agreement']:.1%}"
    )
    if "export_accuracy" in p:
        line += f", top-1 accuracy {p['reference_accuracy']:.1%} -> {p['export_accuracy']:.1%}"
    out.print(line, highlight=False)
    speed = result.parity.get("speed")
    if speed:
        out.print(
            f"speed (batch {speed['batch']}, {speed['threads']} threads): fp32 "
            f"{speed['fp32_img_per_s']:.1f} img/s, int8 {speed['int8_img_per_s']:.1f} img/s "
            f"({speed['speedup']:.2f}x)",
            highlight=False,
        )
    say(f"export: {result.path}\nparity: {result.parity_path}", console=out)
