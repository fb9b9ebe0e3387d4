"""`imgrec shards`: write a dataset as disk shards, for training on more images than fit in RAM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgrec.cli.common import Quiet, err, existing_data, in_range, out, say, shown, with_default
from imgrec.data.cache_policy import DEFAULT_SHARD_SIZE

commands = typer.Typer()


@commands.command(
    "shards",
    epilog="Example: imgrec shards photos/ --out photos-shards   (then: imgrec train "
    "photos-shards)",
)
def shards(
    data: Annotated[
        str,
        typer.Argument(
            callback=existing_data,
            help="Folder per class, train/val/test folders, or a CSV; or the same in object "
            "storage (s3://bucket/photos/, credentials from the environment).",
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to write the shards into (new or empty).")
    ],
    image_size: Annotated[
        int,
        typer.Option(
            help="Short side of the stored images in pixels (never enlarged); at least the "
            "resize size of the model to train (292 for the default efficientnet_lite0 at "
            "256 px; `imgrec train` says so if it is smaller). Default: 292.",
            callback=in_range(32),
        ),
    ] = DEFAULT_SHARD_SIZE,
    images_per_shard: Annotated[
        int | None,
        typer.Option(
            help=with_default(
                "Images per shard file.", "1,000; fewer below 16,000 images, to make 16 shards"
            ),
            callback=in_range(1),
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help=with_default("Processes that write shards.", "all cores"), callback=in_range(1)
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace shards of other images already in --out.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Write photos as disk shards: resized JPEGs in tar files, for data bigger than RAM.

    A run that was interrupted resumes where it stopped when started again with the same
    arguments.
    """
    import time

    from imgrec.data.shards import write_shards
    from imgrec.data.sources import shard_source

    started = time.perf_counter()
    found = shard_source(data)
    try:
        manifest = write_shards(
            found.inputs,
            out_dir,
            image_size,
            read=found.read,
            workers=workers,
            images_per_shard=images_per_shard,
            source=found.source,
            progress=not quiet and err.is_terminal,
            overwrite=overwrite,
            skipped=found.skipped,
        )
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted[/]; the finished shards are kept in {shown(out_dir)}: run "
            "the same command again to write the rest"
        )
        raise typer.Exit(130) from None
    reused = f", {manifest.reused} of them already there" if manifest.reused else ""
    seconds = max(time.perf_counter() - started, 1e-6)
    skipped = len(manifest.skipped)
    say(
        f"wrote {manifest.images:,} images in {manifest.shards} shard"
        f"{'s' if manifest.shards != 1 else ''}{reused} ({manifest.bytes / 1e6:.1f} MB) to "
        f"{out_dir}; "
        f"{skipped} skipped{' (listed in imgrec-shards.json)' if skipped else ''}; "
        f"{seconds:.1f} s, {manifest.images / seconds:,.0f} images/s",
        console=out,
    )
