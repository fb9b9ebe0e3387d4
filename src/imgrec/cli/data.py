"""Commands about the photos themselves: audit, split, augment-preview."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from imgrec.cli.common import (
    Actors,
    Address,
    On,
    Place,
    Quiet,
    Seed,
    SplitRatios,
    check_ratios,
    err,
    existing_data,
    in_range,
    out,
    parse_ratios,
    print_audit_summary,
    renamed,
    say,
    shown,
    with_default,
)
from imgrec.config import AUGMENT_PRESETS
from imgrec.errors import ImgrecError

commands = typer.Typer()


@commands.command(
    "augment-preview",
    epilog="Example: imgrec augment-preview photos/ --augment strong --out grid.png --views 5",
)
def augment_preview(
    data: Annotated[
        Path,
        typer.Argument(
            callback=existing_data, help="Folder per class, train/val/test folders, or a CSV."
        ),
    ],
    augment: Annotated[
        str,
        typer.Option(help="Preset to show.", metavar=f"<{'|'.join(AUGMENT_PRESETS)}>"),
    ] = "default",  # a string, not a choice: an unknown preset ends in the preview's own error
    out_file: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path(
        "augment-preview.png"
    ),
    images: Annotated[
        int, typer.Option(help="Images (rows), spread over the classes.", callback=in_range(1))
    ] = 6,
    views: Annotated[
        int, typer.Option(help="Augmented views per image.", callback=in_range(1))
    ] = 5,
    seed: Annotated[
        int, typer.Option(help="Random seed (which images, which views).", callback=in_range(0))
    ] = 0,
    model: Annotated[
        str, typer.Option(help="Model whose input size and normalisation to use.")
    ] = "efficientnet_lite0",
) -> None:
    """Show what an augmentation preset does: each image, then views as training sees them."""
    from imgrec.models.registry import get_spec
    from imgrec.train.augment_preview import preview_augmentations

    path = preview_augmentations(data, augment, out_file, images, views, seed, get_spec(model))
    say(f"preview: {path}", console=out)


@commands.command(
    epilog="Example: imgrec audit photos/ --out runs/audit   (exit code 3 when something makes "
    "results wrong: unreadable files, leakage between splits, copies with different labels)"
)
def audit(
    data: Annotated[
        Path,
        typer.Argument(
            callback=existing_data,
            help="Folder per class, train/val/test folders, a CSV, or a shards folder.",
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help=with_default("Folder for audit.html and audit.json.", "runs/audit-N")
        ),
    ] = None,
    embeddings: Annotated[
        bool,
        typer.Option(help="Backbone embeddings: label errors, outliers, cropped copies."),
    ] = True,
    model: Annotated[str, typer.Option(help="Backbone for the embeddings.")] = "efficientnet_lite0",
    quiet: Quiet = False,
    on: On = Place.local,
    address: Address = None,
    actors: Actors = None,
) -> None:
    """Audit labelled photos: broken files, duplicates, leakage, label errors, odd images.

    Checks class balance, odd images (tiny, dark, blurry), duplicates and leakage between
    splits, likely label errors and outliers. Exit code 3 when a finding makes training or
    evaluation results wrong (unreadable files, leakage between splits, identical files with
    different labels); warnings are worth a look but exit 0. With --on ray, each image is read,
    hashed and embedded on a Ray cluster (DATA may be an s3:// prefix) and the search for
    duplicates, leakage and label errors runs here on what it sends back.
    """
    from imgrec.audit.report import save_audit
    from imgrec.bundle.run_folder import next_run_folder

    if address and on != Place.ray:
        raise ImgrecError("--address names a Ray cluster: add --on ray.")
    folder = out_dir or next_run_folder(name="audit")
    if on == Place.ray:
        from imgrec.audit.on_ray import audit_on_ray
        from imgrec.infer.on_ray import RayOptions

        options = RayOptions(address, actors=actors, progress=not quiet and err.is_terminal)
        result = audit_on_ray(data, model=model, embeddings=embeddings, options=options)
    else:
        result = _audit_here(data, embeddings, model, quiet)
    json_path, html_path = save_audit(result, folder)
    print_audit_summary(result)
    say(f"report: {html_path}\njson:   {json_path}", console=out)
    if result.blocking_issues():
        raise typer.Exit(3)


def _audit_here(data: Path, embeddings: bool, model: str, quiet: bool):
    """The audit in this process (a shards folder reads its records' facts)."""
    from imgrec.audit.run import audit_dataset
    from imgrec.data.sources import audit_source

    dataset, facts, decode = audit_source(data)
    if not dataset.samples:
        raise ImgrecError(f"no readable images found in {data}.")
    return audit_dataset(
        dataset,
        embeddings=embeddings,
        model=model,
        progress=not quiet,
        decoded=facts,
        decode=decode,
    )


@commands.command("split", epilog="Example: imgrec split photos/ --split 80/10/10 --out split.csv")
def split_command(
    data: Annotated[
        Path,
        typer.Argument(
            callback=existing_data, help="Folder per class, a CSV path,label, or a shards folder."
        ),
    ],
    split: SplitRatios = "70/15/15",
    ratios: Annotated[
        str | None, typer.Option("--ratios", hidden=True, callback=check_ratios)
    ] = None,  # the old name of --split, kept for one release
    out_file: Annotated[Path, typer.Option("--out", help="split.csv to write.")] = Path(
        "split.csv"
    ),
    seed: Seed = 0,
    embeddings: Annotated[
        bool, typer.Option(help="Also group cropped copies found by backbone embeddings.")
    ] = True,
    quiet: Quiet = False,
) -> None:
    """Stratified split that keeps every group of duplicates inside one split.

    Writes a split.csv that `imgrec train --split-file` reuses. Existing split folders are
    ignored.
    """
    if ratios is not None:
        renamed("--ratios", "--split")
        split = ratios
    from imgrec.audit.run import audit_dataset, group_keys
    from imgrec.data.dataset import Dataset
    from imgrec.data.sources import audit_source
    from imgrec.data.split import write_split_file

    parts_ratio = parse_ratios(split)
    loaded, facts, decode = audit_source(data)
    unsplit = [dataclasses.replace(s, split=None) for s in loaded.samples]
    dataset = Dataset(loaded.root, unsplit, loaded.classes, loaded.skipped, loaded.content_hashes)
    result = audit_dataset(
        dataset, embeddings=embeddings, progress=not quiet, decoded=facts, decode=decode
    )
    parts = dataset.split(*parts_ratio, seed=seed, groups=group_keys(dataset, result))
    write_split_file(out_file, dict(zip(("train", "val", "test"), parts, strict=True)))
    where = {s.path: s.split for part in parts for s in part.samples}
    crossing = sum(len({where[p] for p in g.paths}) > 1 for g in result.duplicates)
    table = Table("split", Column("images", justify="right"), *map(shown, dataset.classes))
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        table.add_row(name, str(len(part)), *(str(n) for n in part.class_counts().values()))
    out.print(table)
    say(
        f"{len(result.duplicates)} duplicate groups kept whole; cross-split duplicates: "
        f"{crossing}\nsplit:  {out_file}",
        console=out,
    )
