"""``v2v``: operate the gateway. Command and option names are a contract with operators'
scripts; add, never rename."""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gateway.cli.fixtures import fixtures_app
from gateway.settings import DatabaseUrlError, Settings

if TYPE_CHECKING:
    from gateway.domain.model import TherapyOrder
    from gateway.service.orders import OrderService

app = typer.Typer(
    help="vein2vein: cell-therapy order gateway and chain-of-identity labels.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
orders_app = typer.Typer(help="Therapy orders.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained custody and audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(orders_app, name="orders")
app.add_typer(audit_app, name="audit")
auth_app = typer.Typer(help="Credentials for staff and partners.", no_args_is_help=True)
app.add_typer(auth_app, name="auth")
outbox_app = typer.Typer(
    help="Messages waiting for, or refused by, partners.", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")
mappings_app = typer.Typer(help="Declarative partner mapping files.", no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")
app.add_typer(fixtures_app, name="fixtures")

console = Console()
errors = Console(stderr=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8080,
    mllp_port: Annotated[int, typer.Option("--mllp-port", help="HL7 v2 MLLP port.")] = 2575,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="HTTP worker processes. Above 1 the MLLP listener and the outbox relay still "
            "run once, in the supervising process.",
        ),
    ] = 1,
) -> None:
    """Run the gateway (database URL from V2V_DATABASE_URL; default ./vein2vein.db)."""
    import logging

    from adapters.hl7v2.tls import MllpSettingsError
    from gateway.cli.serve import InsecureBinding
    from gateway.cli.serve import serve as run
    from gateway.mapping_files import MappingFileError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        run(replace(_settings(), host=host, http_port=port, mllp_port=mllp_port), workers)
    except (InsecureBinding, MappingFileError, MllpSettingsError) as exc:
        errors.print(f"[red]vein2vein did not start:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the latest revision."""
    from gateway.store.database import make_engine
    from gateway.store.migrate import current_revision, upgrade

    engine = make_engine(_settings().database_url)
    upgrade(engine)
    console.print(f"schema at revision [bold]{current_revision(engine)}[/]")


@orders_app.command("list")
def orders_list(
    state: Annotated[str | None, typer.Option(help="Filter by state (or ON_HOLD).")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List orders, newest first."""
    from gateway.bootstrap import build_service

    page = build_service(_existing_database()).search(state=state, limit=limit)
    if as_json:
        print(json.dumps([o.model_dump(mode="json") for o in page.orders], indent=2))
        return
    table = Table("id", "CoI", "therapy", "site", "status", "v", "updated")
    for order in page.orders:
        cells = (
            order.id,
            order.coi or "-",
            order.therapy.code,
            order.site.id,
            order.status,
            str(order.version),
            order.updated_at.isoformat(" ", "seconds"),
        )
        table.add_row(*map(escape, cells))
    console.print(table)


@orders_app.command("show")
def orders_show(
    order_id: Annotated[str, typer.Argument(help="Order id, CoI or placer number.")],
) -> None:
    """Show one order as canonical JSON (no patient identity)."""
    from gateway.bootstrap import build_service

    order = _find_order(build_service(_existing_database()), order_id)
    body = order.model_dump(mode="json")
    body["status"] = order.status
    print(json.dumps(body, indent=2))


@audit_app.command("verify")
def audit_verify(
    checkpoints: Annotated[
        Path | None,
        typer.Option(help="Exported checkpoint file to check as well (see `audit checkpoint`)."),
    ] = None,
) -> None:
    """Walk the hash chain and its signed checkpoints; exit 1 at the first problem."""
    from gateway.store import checkpoints as signed
    from gateway.store.audit import verify_chain
    from gateway.store.database import make_engine

    engine = make_engine(_existing_database().database_url)
    with engine.connect() as conn:
        report = verify_chain(conn)
        exported = signed.read_export(checkpoints) if checkpoints else []
        signatures = signed.verify(conn, signed.public_key(), exported)
    if not report.ok:
        errors.print(
            f"[red]audit chain BROKEN at entry {report.broken_at}[/]: "
            f"{escape(report.reason or '')} ({report.entries} entries verified before it)"
        )
        raise typer.Exit(1)
    if not signatures.ok:
        errors.print(f"[red]audit checkpoints FAILED[/]: {escape(signatures.reason or '')}")
        raise typer.Exit(1)
    console.print(
        f"[green]audit chain intact[/]: {report.entries} entries verified, "
        f"{signatures.checked} signed checkpoint(s) valid"
    )


@audit_app.command("checkpoint")
def audit_checkpoint(
    export: Annotated[
        Path | None, typer.Option(help="Also append the checkpoint to this file (off-database).")
    ] = None,
) -> None:
    """Sign the chain's current head with V2V_AUDIT_KEY_FILE and append the checkpoint."""
    from datetime import UTC, datetime

    from gateway.store import checkpoints as signed
    from gateway.store.database import make_engine

    engine = make_engine(_existing_database().database_url)
    try:
        with engine.begin() as conn:
            checkpoint = signed.create(conn, at=datetime.now(UTC), actor="v2v audit checkpoint")
    except signed.CheckpointKeyMissing as exc:
        errors.print(f"[red]No signing key:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if checkpoint is None:
        console.print("the audit chain is empty; nothing to sign")
        return
    if export is not None:
        signed.append_export(export, checkpoint)
    console.print(f"signed checkpoint at entry {checkpoint.covers_seq} (key {checkpoint.key_id})")


@audit_app.command("keygen")
def audit_keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the Ed25519 private key (PEM).")],
) -> None:
    """Make a checkpoint signing key pair (keep the private key off the database host)."""
    from gateway.store.checkpoints import generate_key

    if path.exists():
        errors.print(f"[red]{escape(str(path))} exists; refusing to overwrite a key.[/]")
        raise typer.Exit(2)
    public = generate_key(path)
    console.print(f"private key: {path}\npublic key:  {public}", markup=False)


@auth_app.command("hash-password")
def auth_hash_password(
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="The password (prompted for when omitted).",
        ),
    ],
) -> None:
    """Print a scrypt hash for a user's password_hash in V2V_AUTH_FILE."""
    from gateway.auth.passwords import hash_password

    if len(password) < 12:
        errors.print("[red]Use at least 12 characters.[/]")
        raise typer.Exit(2)
    print(hash_password(password))


@outbox_app.command("list")
def outbox_list(
    status: Annotated[
        str | None, typer.Option(help="pending, delivered or dead (default: not delivered).")
    ] = None,
    order: Annotated[str | None, typer.Option(help="Only this order's messages.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 100,
) -> None:
    """List outbound messages and their delivery state."""
    from gateway.store import outbox
    from gateway.store.database import make_engine

    engine = make_engine(_existing_database().database_url)
    with engine.connect() as conn:
        if status is None:
            items = outbox.list_items(conn, status=outbox.DEAD, order_id=order, limit=limit)
            items += outbox.list_items(conn, status=outbox.PENDING, order_id=order, limit=limit)
        else:
            items = outbox.list_items(conn, status=status, order_id=order, limit=limit)
    table = Table("id", "destination", "kind", "order", "status", "tries", "last error")
    for item in items:
        cells = (
            str(item.id),
            item.destination,
            item.kind,
            item.order_id or "-",
            item.status,
            str(item.attempts),
            (item.last_error or "")[:60],
        )
        table.add_row(*map(escape, cells))
    console.print(table)


@outbox_app.command("retry")
def outbox_retry(item_id: Annotated[int, typer.Argument(help="Outbox item id.")]) -> None:
    """Put a dead-lettered (or waiting) message back in line now."""
    from datetime import UTC, datetime

    from gateway.service.operations import retry_outbox
    from gateway.store.database import make_engine

    engine = make_engine(_existing_database().database_url)
    if not retry_outbox(engine, item_id, actor="v2v outbox retry", at=datetime.now(UTC)):
        errors.print(f"[red]No undelivered outbox item {item_id}.[/]")
        raise typer.Exit(1)
    console.print(f"outbox item {item_id} will be retried")


@outbox_app.command("dead-letter")
def outbox_dead_letter(
    item_id: Annotated[int, typer.Argument(help="Outbox item id.")],
    reason: Annotated[str, typer.Option(help="Why it should not be delivered.")],
) -> None:
    """Stop retrying a message (it stays listed, with the reason)."""
    from datetime import UTC, datetime

    from gateway.service.operations import dead_letter_outbox
    from gateway.store.database import make_engine

    engine = make_engine(_existing_database().database_url)
    if not dead_letter_outbox(
        engine, item_id, reason=reason, actor="v2v outbox dead-letter", at=datetime.now(UTC)
    ):
        errors.print(f"[red]No pending outbox item {item_id}.[/]")
        raise typer.Exit(1)
    console.print(f"outbox item {item_id} dead-lettered")


@mappings_app.command("check")
def mappings_check(
    folder: Annotated[
        Path | None,
        typer.Option(help="Mappings folder (default: the installed one, or V2V_MAPPINGS_DIR)."),
    ] = None,
) -> None:
    """Validate every mapping family the gateway loads at start, products included; name
    file, line and reason for the first problem in each and exit 1."""
    import os

    from gateway.mapping_check import check_all
    from gateway.mapping_files import mappings_dir

    if folder is not None:
        source = "--folder"
    elif os.environ.get("V2V_MAPPINGS_DIR"):
        source = "V2V_MAPPINGS_DIR"
    else:
        source = "the installed mappings; V2V_MAPPINGS_DIR is not set"
    checked = (folder or mappings_dir()).resolve()
    console.print(f"checking {checked} ({source})", markup=False, highlight=False, soft_wrap=True)
    if not checked.is_dir():
        errors.print(f"no such folder: {checked}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    here = Path("mappings").resolve()
    if folder is None and here.is_dir() and here != checked:
        # An engineer editing ./mappings must not take "ok" for a verdict on their files.
        console.print(
            f"note: {here} is not checked and not read by the gateway; "
            "check it with --folder mappings, use it with V2V_MAPPINGS_DIR",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    failed = False
    for result in check_all(checked):
        if result.error is None:
            console.print(f"[green]ok[/]      {result.name}: {result.files} file(s)")
        else:
            failed = True
            errors.print(f"[red]BROKEN[/]  {result.name}: {escape(str(result.error))}")
    if failed:
        raise typer.Exit(1)


@app.command()
def label(
    order: Annotated[str, typer.Argument(help="Order id, CoI or placer number.")],
    unit: Annotated[str | None, typer.Argument(help="Unit id (omit for the wristband).")] = None,
    kind: Annotated[str, typer.Option(help="bag, cassette or wristband.")] = "bag",
    fmt: Annotated[str, typer.Option("--format", help="png, svg, pdf or zpl.")] = "png",
    out: Annotated[
        Path | None, typer.Option(help="File to write (default: stdout for text formats).")
    ] = None,
) -> None:
    """Render a unit's label or the patient's wristband."""
    from gateway.api.scans import render
    from gateway.bootstrap import build_service
    from gateway.mapping_files import MappingFileError
    from gateway.service.labels import LabelFactory, LabelUnavailable
    from gateway.sites import load_sites
    from labeling.layout import LabelKind

    if fmt not in ("png", "svg", "pdf", "zpl"):
        errors.print(f"[red]Unknown format {escape(repr(fmt))}; use png, svg, pdf or zpl.[/]")
        raise typer.Exit(2)
    service = build_service(_existing_database())
    found = _find_order(service, order)
    patient = service.patient_of(found.id)
    try:
        factory = LabelFactory.default(load_sites())
        if kind == "wristband":
            if patient is None:
                raise LabelUnavailable("the order has no patient record")
            data = factory.wristband(found, patient)
        else:
            target = found.unit(unit or "")
            if target is None:
                raise LabelUnavailable(
                    f"order {found.id} has no unit {unit!r}; units: "
                    f"{', '.join(u.unit_id for u in found.units) or 'none'}"
                )
            label_kind = LabelKind(kind)
            data = factory.product_label(
                found, target, label_kind, patient if label_kind.may_carry_patient else None
            )
    except (LabelUnavailable, ValueError, MappingFileError) as exc:
        errors.print(f"[red]Cannot print that label:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    content = render(data, fmt)  # type: ignore[arg-type]
    if out is None and fmt in ("png", "pdf"):
        errors.print("[red]Binary formats need --out FILE.[/]")
        raise typer.Exit(2)
    if kind == "wristband" or (patient is not None and LabelKind(kind).may_carry_patient):
        # A label that shows the patient is a read of PHI, audited as through the API.
        what = "label:wristband" if kind == "wristband" else f"label:{kind}:{unit}"
        service.record_access(found.id, actor=f"cli:{getpass.getuser()}", what=what)
    if out is None:
        sys.stdout.write(content.decode())
        return
    out.write_bytes(content)
    console.print(f"wrote {out} ({len(content)} bytes)", markup=False)


@app.command()
def scan(
    text: Annotated[str | None, typer.Argument(help="What the scanner typed (quote it).")] = None,
    checkpoint: Annotated[str, typer.Option(help="receipt, storage, thaw or bedside.")] = "receipt",
    user: Annotated[str, typer.Option(help="Who is scanning (goes into the custody log).")] = "",
    image: Annotated[Path | None, typer.Option(help="A photo of the label instead.")] = None,
    order: Annotated[str | None, typer.Option(help="The order being worked on.")] = None,
    wristband: Annotated[str | None, typer.Option(help="The wristband scan (bedside).")] = None,
    location: Annotated[str | None, typer.Option(help="Where the scan happens.")] = None,
) -> None:
    """Check a scanned label against its order; exit 0 on green, 3 on red."""
    from gateway.bootstrap import build_service
    from gateway.domain.verification import Checkpoint
    from gateway.service.scanning import ScanRequest, ScanStation
    from gateway.sites import load_sites

    if not user:
        errors.print("[red]--user is required: every verdict is recorded under a name.[/]")
        raise typer.Exit(2)
    if (text is None) == (image is None):
        errors.print("[red]Give the scanned text or --image, not both.[/]")
        raise typer.Exit(2)
    try:
        point = Checkpoint(checkpoint)
    except ValueError:
        errors.print(f"[red]Unknown checkpoint {escape(repr(checkpoint))}.[/]")
        raise typer.Exit(2) from None
    service = build_service(_existing_database())
    order_id = _find_order(service, order).id if order else None
    result = ScanStation(service, load_sites()).scan(
        ScanRequest(
            checkpoint=point,
            user=user,
            unit_scan=text,
            unit_image=image.read_bytes() if image else None,
            wristband_scan=wristband,
            order_id=order_id,
            location=location,
        )
    )
    if result.green:
        console.print(
            "[bold white on green] GREEN [/] "
            + escape(f"{result.reason} unit {result.unit_id} CoI {result.coi}")
            + (" — bedside complete" if result.bedside_complete else "")
        )
        return
    console.print(
        f"[bold white on red] RED — STOP [/] {escape(f'{result.reason_code}: {result.reason}')}"
    )
    raise typer.Exit(3)


def _settings() -> Settings:
    """The environment's settings; a V2V_DATABASE_URL that is no database URL is one line and
    exit 2, not a traceback from deep in SQLAlchemy."""
    try:
        return Settings()
    except DatabaseUrlError as exc:
        errors.print(f"[red]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _existing_database() -> Settings:
    """Settings for a command that works on what the database holds. SQLite creates a file on
    first connect, so a mistyped or unset V2V_DATABASE_URL would otherwise leave an empty
    database behind and answer as if it were the gateway's ("no order ...")."""
    from sqlalchemy.engine import make_url

    settings = _settings()
    url = make_url(settings.database_url)
    path = url.database
    if (
        url.get_backend_name() == "sqlite"
        and path not in (None, "", ":memory:")
        and not url.query.get("uri")
        and not Path(path).exists()
    ):
        errors.print(
            f"[red]no database at {escape(str(Path(path).resolve()))}[/]: set V2V_DATABASE_URL "
            "to the gateway's database, or create one with v2v serve or v2v db upgrade",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    return settings


def _find_order(service: OrderService, key: str) -> TherapyOrder:
    """An order by CoI, placer number or id: operators paste whichever they have."""
    from gateway.service.errors import NotFound

    found = service.find("coi", key) or service.find("placer", key)
    if found is not None:
        return found
    try:
        return service.get(key)
    except NotFound:
        pass
    typed = _typed_coi(key)
    if typed is not None:
        found = service.find("coi", typed)
        if found is not None:
            return found
    errors.print(f"[red]No order with id, CoI or placer number {escape(repr(key))}.[/]")
    raise typer.Exit(1)


#: A CoI's characters without its check character (CH, facility, year, serial).
_COI_LENGTH = 15


def _typed_coi(key: str) -> str | None:
    """The CoI value of a key typed as the label prints it (with spaces and its check
    character), or None when the key is no CoI. A wrong check character is a typing error:
    the person is told so rather than that no order exists."""
    from labeling.coi import parse_coi
    from labeling.errors import BadCheckCharacter, LabelDataError

    try:
        return parse_coi(key).value
    except BadCheckCharacter as exc:
        if len(key.replace(" ", "")) <= _COI_LENGTH:
            return None  # no check character typed: the exact lookup already found nothing
        errors.print(f"[red]{escape(str(exc))}: check the CoI as typed.[/]")
        raise typer.Exit(1) from None
    except LabelDataError:
        return None


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the timeline, labels and report.")] = Path(
        "v2v-demo-output"
    ),
) -> None:
    """Run a whole autologous CAR-T order end to end on a fresh SQLite file."""
    from gateway.demo import run_demo

    wide = Console(width=max(console.width, 120)) if not console.is_terminal else console
    sys.exit(run_demo(out, wide))


if __name__ == "__main__":
    app()
