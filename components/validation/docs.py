"""Data Docs a person can open offline, and the validation summary as JSON and markdown.

Great Expectations renders its site with stylesheets and scripts from public CDNs: offline, its index
table is empty (it is filled by bootstrap-table) and its status icons are blank (Font Awesome). So
the site GX writes under ``gx/`` is made self-contained (external tags removed, a small inline
stylesheet that draws the icons as characters), and ``index.html`` is written here from the
:class:`ValidationReport`: every suite, every check, its result and what was observed, with a link
to GX's page for that suite. No page loads anything from the network.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from shopdistill.components.artifacts import write_json_atomic, write_text_atomic
from shopdistill.components.messages import clip
from shopdistill.components.validation.runner import CRITICAL, GX_SITE, CheckResult, ValidationReport

_EXTERNAL = re.compile(
    r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>|<link[^>]*\bhref="https?://[^"]*"[^>]*>'
    r'|<img[^>]*\bsrc="https?://[^"]*"[^>]*>',
    re.S,
)
_ICONS = """<style>/* offline stand-ins for GX's CDN assets */
body{font-family:system-ui,sans-serif;margin:1rem}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2rem .4rem;vertical-align:top}
i.fas{font-style:normal}.fa-check-circle::before{content:"\\2714"}
.fa-times::before,.fa-times-circle::before{content:"\\2718"}
.fa-question-circle::before{content:"?"}.text-success{color:#1a7f37}.text-danger{color:#c62828}
.tab-pane{display:block!important;opacity:1!important}#ge-cta-footer{display:none}</style>"""

_PAGE_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:80rem}
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}
td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f3f3f3}.pass{color:#1a7f37}.fail{color:#c62828;font-weight:bold}.warn{color:#a15c00}
code{font-size:.85rem}"""


def write_data_docs(report: ValidationReport, docs_dir: str | Path) -> Path:
    """Make GX's site under ``docs_dir/gx`` offline-safe and write ``docs_dir/index.html``."""
    docs_dir = Path(docs_dir)
    gx_dir = docs_dir / GX_SITE
    for page in gx_dir.rglob("*.html") if gx_dir.exists() else []:
        _make_offline(page)
    index = docs_dir / "index.html"
    write_text_atomic(index, _index_html(report, docs_dir))
    return index


def write_summary(report: ValidationReport, out_dir: str | Path) -> None:
    """``validation.json`` (every check, machine-readable) and ``validation.md`` under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "validation.json", report.summary())
    write_text_atomic(out_dir / "validation.md", report.to_markdown() + "\n")


def _make_offline(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    if "offline stand-ins" in html:
        return
    html = _EXTERNAL.sub("", html)
    html = html.replace("</head>", _ICONS + "</head>", 1)
    write_text_atomic(page, html)


def _status(r: CheckResult) -> tuple[str, str]:
    if r.success:
        return "pass", "\u2714 pass"
    return ("fail", "\u2718 FAIL") if r.severity == CRITICAL else ("warn", "\u26a0 warn")


def _detail(r: CheckResult) -> str:
    if r.error:
        return f"could not be checked: {r.error}"
    if r.unexpected_count is not None and r.element_count is not None:
        text = f"{r.unexpected_count:,} of {r.element_count:,} rows fail"
        return text + (f"; e.g. {', '.join(map(clip, r.examples))}" if r.examples else "")
    return "" if r.observed_value is None else f"observed {clip(r.observed_value)}"


def _suite_page(docs_dir: Path, suite: str) -> str | None:
    """The newest GX validation page of ``suite``, relative to ``docs_dir``."""
    pages = sorted((docs_dir / GX_SITE / "validations" / suite).rglob("*.html"))
    return pages[-1].relative_to(docs_dir).as_posix() if pages else None


def _index_html(report: ValidationReport, docs_dir: Path) -> str:
    suites = list(dict.fromkeys(r.suite for r in report.results))
    verdict = "passed" if report.passed else "FAILED"
    parts = [
        f"<h1>Data validation: {verdict}</h1>",
        f"<p>{len(report.results)} checks in {len(suites)} suites: {len(report.failures)} failed, "
        f"{len(report.warnings)} warnings. Critical checks stop the run; warnings are reported only.</p>",
    ]
    for suite in suites:
        rows = [r for r in report.results if r.suite == suite]
        failed = sum(not r.success for r in rows)
        page = _suite_page(docs_dir, suite)
        link = f' (<a href="{escape(page)}">Great Expectations page</a>)' if page else ""
        parts.append(
            f'<h2 id="{escape(suite)}">{escape(suite)}: {len(rows)} checks, {failed} not met{link}</h2>'
        )
        parts.append(
            "<table><tr><th>result</th><th>check</th><th>severity</th><th>expectation</th><th>detail</th></tr>"
        )
        for r in rows:
            css, label = _status(r)
            parts.append(
                f'<tr><td class="{css}">{label}</td><td>{escape(r.description)}</td><td>{r.severity}</td>'
                f"<td><code>{escape(r.expectation)}</code></td><td>{escape(_detail(r))}</td></tr>"
            )
        parts.append("</table>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Data validation</title>'
        f"<style>{_PAGE_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
