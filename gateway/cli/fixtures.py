"""``v2v fixtures``: browse the fixture library and replay it against any gateway.

Integration testers aim ``replay`` at their own engine (``--url`` for the HTTP API and
webhooks, ``--mllp host:port`` for HL7 v2) and get a pass/fail line per step, comparing the
acknowledgement or response they got with the one the fixture's metadata expects.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from fixtures.library import Fixture

fixtures_app = typer.Typer(
    help="The fixture library: list, show and replay sample messages and scenarios.",
    no_args_is_help=True,
)
console = Console()
errors = Console(stderr=True)


#: Narrower than this, the five-column table squeezes its free-text columns to a word or two
#: (the id column alone takes up to 72) and cuts values short, so fixtures are stacked.
TABLE_WIDTH = 200


def _print_stacked(library: list[Fixture]) -> None:
    """One block per fixture, grouped by protocol: its id on a line of its own, then its step,
    expected outcome and response wrapped beneath it. Readable at any width, 80 included."""
    counts = Counter(f.protocol for f in library)
    console.print(Text(f"fixtures ({len(library)})", style="bold"))
    console.print(Text("id, then step: expected outcome → response", style="dim"))
    current: str | None = None
    for f in library:
        if f.protocol != current:
            current = f.protocol
            console.print()
            console.print(Text(f"{current} ({counts[current]})", style="bold underline"))
        console.print(
            Padding(Text(f.id, style="cyan", overflow="fold"), (0, 0, 0, 2), expand=False)
        )
        detail = Text(f"{f.step}: ", style="dim")
        detail.append(f.expected)
        detail.append(" → ", style="dim")
        detail.append(f.response)
        console.print(Padding(detail, (0, 0, 0, 6), expand=False))
    console.print()


@fixtures_app.command("list")
def list_fixtures(
    protocol: Annotated[str | None, typer.Option(help="Only this protocol (e.g. hl7v2).")] = None,
    contains: Annotated[str | None, typer.Option(help="Only ids containing this text.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every fixture and scenario, with its expected outcome and response."""
    from fixtures.library import load_library
    from fixtures.replay import load_scenario, scenario_names

    library = [
        f
        for f in load_library()
        if (protocol is None or f.protocol == protocol) and (contains is None or contains in f.id)
    ]
    if as_json:
        print(json.dumps([{k: v for k, v in vars(f).items()} for f in library], indent=2))
        return
    if console.width >= TABLE_WIDTH:
        table = Table("protocol", "step", "expected", "response", title="fixtures")
        table.add_column("id", no_wrap=True)
        for f in library:
            table.add_row(*map(escape, (f.protocol, f.step, f.expected, f.response, f.id)))
        console.print(table)
    else:
        _print_stacked(library)
    if protocol is None and contains is None:
        scenarios = Table("scenario", "steps", "what it shows", title="scenarios")
        for name in scenario_names():
            scenario = load_scenario(name)
            scenarios.add_row(escape(name), str(len(scenario.steps)), escape(scenario.title))
        console.print(scenarios)


@fixtures_app.command("show")
def show(name: Annotated[str, typer.Argument(help="A fixture id or a scenario name.")]) -> None:
    """A fixture's metadata and message (or a scenario's steps)."""
    from fixtures.library import LibraryError, find
    from fixtures.replay import ReplayError, load_scenario, scenario_names

    if name in scenario_names():
        try:
            scenario = load_scenario(name)
        except ReplayError as exc:
            errors.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
        console.print(f"[bold]{escape(scenario.title)}[/]  ({escape(str(scenario.path))})")
        for number, step in enumerate(scenario.steps, 1):
            console.print(f"{number:>3}. {json.dumps(step, ensure_ascii=False)}", markup=False)
        return
    try:
        fixture = find(name)
    except LibraryError as exc:
        errors.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    for label, value in (
        ("id", fixture.id),
        ("protocol", fixture.protocol),
        ("file", fixture.path),
        ("partner", fixture.partner or "-"),
        ("scenario", fixture.scenario),
        ("step", fixture.step),
        ("expected", fixture.expected),
        ("response", fixture.response),
    ):
        console.print(f"[bold]{label:>9}[/] {escape(str(value))}")
    if fixture.protocol == "label-image":
        console.print(f"[dim]{len(fixture.content())} bytes of PNG[/]")
        return
    text = fixture.content().decode("utf-8", "replace")
    console.print(text.replace("\r", "\n"), markup=False, highlight=False)


def _target(
    url: str | None, mllp: str | None, secret: list[str], header: list[str], timeout: float
) -> Any:
    from fixtures.replay import Target

    address = None
    if mllp:
        host, _, port = mllp.rpartition(":")
        if not host or not port.isdigit():
            errors.print(f"[red]--mllp must be host:port, not {escape(repr(mllp))}[/]")
            raise typer.Exit(2)
        address = (host, int(port))
    secrets = dict(item.split("=", 1) for item in secret if "=" in item)
    headers = {k.strip(): v.strip() for k, _, v in (h.partition(":") for h in header)}
    return Target(url=url, mllp=address, secrets=secrets, headers=headers, timeout=timeout)


@fixtures_app.command("replay")
def replay(
    names: Annotated[
        list[str], typer.Argument(help="Fixture ids and/or scenario names (all: every scenario).")
    ],
    url: Annotated[
        str | None, typer.Option(help="The gateway's HTTP base URL (API, FHIR, webhooks).")
    ] = "http://127.0.0.1:8080",
    mllp: Annotated[
        str | None, typer.Option(help="host:port of the MLLP listener (HL7 v2 fixtures).")
    ] = "127.0.0.1:2575",
    secret: Annotated[
        list[str] | None,
        typer.Option(help="partner=whsec_... to sign webhooks (default: V2V_WEBHOOK_SECRET_*)."),
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option(help="Extra HTTP header, 'Name: value' (credentials).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 15.0,
) -> None:
    """Replay fixtures or scenarios; exit 1 if any answer differs from the expected one."""
    from fixtures.library import LibraryError, find, load_library
    from fixtures.replay import Replay, ReplayError, fixture_step, load_scenario, scenario_names

    target = _target(url, mllp, secret or [], header or [], timeout)
    library = load_library()
    known = scenario_names()
    plan: list[tuple[str, str, list[dict[str, Any]]]] = []
    for name in names:
        if name == "all":
            plan += [(n, load_scenario(n).site, load_scenario(n).steps) for n in known]
        elif name in known:
            scenario = load_scenario(name)
            plan.append((name, scenario.site, scenario.steps))
        else:
            try:
                plan.append((name, "st-mary", [fixture_step(find(name, library))]))
            except LibraryError as exc:
                errors.print(f"[red]{escape(str(exc))}[/]")
                raise typer.Exit(2) from None
    total = sum(len(steps) for _, _, steps in plan)
    rows: list[tuple[str, Any]] = []
    started = time.monotonic()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("replaying", total=total)
        for name, site, steps in plan:
            progress.update(task, description=escape(name))
            run = Replay(target, clock=lambda: datetime.now(UTC), site=site, library=library)
            try:
                for result in run.run_steps(steps, on_step=lambda _r: progress.advance(task)):
                    rows.append((name, result))
            except ReplayError as exc:
                errors.print(f"[red]{escape(f'{name}: {exc}')}[/]")
            finally:
                run.close()
    failed = _summary(rows, time.monotonic() - started)
    if failed or len(rows) < total:
        raise typer.Exit(1)


def _summary(rows: list[tuple[str, Any]], seconds: float) -> int:
    table = Table("", "replayed", "#", "step", "expected", "got", title="replay")
    failed = unmoved = 0
    for name, result in rows:
        failed += not result.ok
        unmoved += bool(result.clock_not_moved)
        got = {k: result.actual.get(k) for k in result.expected} or {
            k: v for k, v in result.actual.items() if k != "text"
        }
        status = "[green]PASS[/]" if result.ok else "[red]FAIL[/]"
        if result.clock_not_moved:
            status += "\n[yellow]clock not moved[/]"
        table.add_row(
            status,
            *map(
                escape,
                (
                    name,
                    str(result.number),
                    result.title,
                    json.dumps(result.expected, default=str),
                    json.dumps(got, default=str) + ("" if result.ok else f"\n{result.detail}"),
                ),
            ),
        )
    console.print(table)
    colour = "red" if failed else "green"
    console.print(
        f"[bold {colour}]{len(rows) - failed} passed, {failed} failed[/] in {seconds:.1f}s"
    )
    if unmoved:
        console.print(
            f"[yellow]{unmoved} step(s) asked for time to pass, which this target's clock "
            "cannot do: the steps after them ran earlier than their scenario intends (replay "
            "those scenarios in the test suite's sandbox to check their timing)[/]"
        )
    return failed


@fixtures_app.command("sandbox")
def sandbox(
    database: Annotated[str, typer.Option(help="SQLite file for the sandbox gateway.")] = (
        "v2v-sandbox.db"
    ),
) -> None:
    """Run the gateway with every partner simulator on loopback until Ctrl-C, for replays
    and for partners trying their payloads (prints the URLs and webhook secrets)."""
    from pathlib import Path

    from fixtures.sandbox import SECRET_VARIABLES, Sandbox, SandboxRefused

    try:
        with Sandbox.start(Path(database)) as world:
            host, port = world.mllp
            console.print(f"gateway  {world.url}   MLLP {host}:{port}")
            console.print(f"EHR MLLP {world.ehr['st-mary'].endpoint}   FHIR {world.fhir.base_url}")
            # Where the gateway's outbound calls land, for partners comparing what they get.
            for name, simulator in [*world.portals.items(), *world.couriers.items()]:
                console.print(f"partner  {name:<15} {simulator.url}", highlight=False)
            console.print(f"ERP SOAP {world.erp.address}", highlight=False)
            # Lines to paste into a shell: never wrapped at the terminal's width, never styled.
            for partner, variable in SECRET_VARIABLES.items():
                console.print(
                    f"export {variable}={world.secrets[partner]}",
                    soft_wrap=True,
                    markup=False,
                    highlight=False,
                )
            console.print(
                f"replay:  v2v fixtures replay all --url {world.url} --mllp {host}:{port} "
                "(with the exports above)",
                soft_wrap=True,
                highlight=False,
            )
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                console.print("stopped")
    except SandboxRefused as exc:
        errors.print(f"[red]The sandbox did not start:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
