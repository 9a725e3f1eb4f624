"""`canhgac report monthly`: the month's report as PDF, HTML or CSV."""

from __future__ import annotations

from pathlib import Path

import click

from service.core.cliutil import data_dir_option, make_app


@click.group("report")
def report_cli() -> None:
    """Báo cáo / reports."""


@report_cli.command("monthly")
@data_dir_option
@click.option("--month", default=None, metavar="YYYY-MM",
              help="Tháng báo cáo / month reported on (default: last month)")
@click.option("--format", "fmt", type=click.Choice(["pdf", "html", "csv"]), default="pdf",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: bao-cao-YYYY-MM.pdf; HTML and CSV go to stdout)")
def monthly_command(data_dir, month, fmt, output) -> None:
    """Build the monthly report from the signed audit trail and write it."""
    from service.core.db import get_session
    from service.reports import monthly

    app = make_app(data_dir)
    settings = app.config["SETTINGS"]
    with app.app_context():
        session = get_session()
        from service.core.db import utcnow

        month = month or monthly.previous_month(utcnow(), settings.timezone)
        try:
            report = monthly.build_monthly_report(session, settings, month)
        except monthly.ReportError as exc:
            session.rollback()
            raise click.ClickException(str(exc)) from None
        if fmt == "pdf":
            data: bytes = monthly.render_monthly_pdf(report, settings)
        elif fmt == "html":
            data = monthly.render_monthly_html(report, settings).encode()
        else:
            data = monthly.monthly_csv(report).encode()
        monthly.record_report_output(session, report, fmt=fmt, by="cli")
        session.commit()
    if output is None and fmt == "pdf":
        output = Path(f"bao-cao-{month}.pdf")
    if output is None:
        click.echo(data.decode(), nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(data)
        click.echo(f"Đã ghi / wrote {output}", err=True)
    state = "tạm thời / provisional" if report.is_provisional else "chính thức / final"
    click.echo(f"Căn cứ / basis: tree size {report.basis.size}, root {report.basis.root_b64} ({state})",
               err=True)
