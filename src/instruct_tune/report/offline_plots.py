"""`dvc plots show|diff` whose HTML page works with no network.

DVC's default page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net, so offline the
interactive charts stay blank. This module writes an HTML template (DVC's `--html-template`) that
carries those three libraries inline, bundled by `vl-convert-python` from copies inside its wheel,
and runs DVC with it:

    python -m instruct_tune.report.offline_plots show [dvc plots show args...]
    python -m instruct_tune.report.offline_plots diff [dvc plots diff args...]

The template goes to `.dvc/tmp/offline_plots_template.html` (DVC git-ignores `.dvc/tmp`); the page
goes where DVC puts it (`dvc_plots/index.html` unless `-o`/`plots.out_dir` says otherwise).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from instruct_tune.io import atomic_write_text

# vega-lite major 5, as DVC's own page (vega-lite@5.2.0) and the "$schema" of DVC's plot templates
# (vega-lite/v5.json): vega-embed warns when a spec's major version differs from the library's.
VEGA_LITE_VERSION = "5.21"
TEMPLATE_NAME = "offline_plots_template.html"

# DVC (dvc_render.html.HTML.embed) fills a template by plain str.replace of these three placeholders.
# `{scripts}` is deliberately absent from ours: DVC would put its CDN <script src=...> tags there.
_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

_PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- %(libs)s, inlined (bundled by vl-convert-python %(vlc)s): no network needed. -->
    <script type="text/javascript">
(function () {
%(bundle)s
})();
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template_html() -> str:
    """The self-contained page template: DVC's default page with the CDN scripts replaced by one inline bundle."""
    import vl_convert

    # The default snippet ends with `window.vegaEmbed = ...; window.vega = ...; window.vegaLite = ...`.
    # It is a classic script (no import/export), run synchronously in <head>, so `vegaEmbed` exists before
    # DVC's plot divs call it from their own inline scripts in <body>; a deferred module would run too late.
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    for placeholder in _PLACEHOLDERS:
        # DVC's str.replace would otherwise rewrite the library's code.
        if placeholder in bundle:
            raise RuntimeError(f"vl-convert bundle contains DVC's placeholder {placeholder}; "
                               "cannot use it as a template")
    # "</script" inside inline JS would end the <script> element early; escaping the slash keeps the JS
    # meaning in the strings and regexes where it could occur. (The current bundle has none.)
    bundle = bundle.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    libs = (
        f"vega {vl_convert.get_vega_version()}, vega-lite {VEGA_LITE_VERSION}, "
        f"vega-embed {vl_convert.get_vega_embed_version()}"
    )
    # The bundle is wrapped in a function so its thousands of minified top-level `const`/`function` names
    # stay private: a global `const t` would make any later script's `var t` a SyntaxError.
    return _PAGE % {"libs": libs, "vlc": _vl_convert_version(), "bundle": bundle}


def _vl_convert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vl-convert-python")
    except PackageNotFoundError:  # e.g. an unusual install without metadata; the version is only a comment
        return "unknown"


def write_template(path: Path) -> Path:
    """Write the self-contained template to `path` (temp file + atomic rename) and return `path`."""
    path = Path(path)
    atomic_write_text(path, template_html())
    return path


def _page_path(args: object, dvc_dir: str) -> Path:
    """Where DVC wrote index.html, resolved exactly as `dvc.commands.plots.CmdPlots.run` does."""
    out = getattr(args, "out", None)
    if not out:
        from dvc.config import Config

        out = Config(dvc_dir=dvc_dir).get("plots", {}).get("out_dir", "dvc_plots")
    return (Path.cwd() / out).resolve() / "index.html"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `dvc plots show|diff` with the offline template; return DVC's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m instruct_tune.report.offline_plots {show,diff} [dvc plots show/diff args...]"
    if not argv or argv[0] not in ("show", "diff"):
        if argv and argv[0] in ("-h", "--help"):
            print(usage)
            print(__doc__)
            return 0
        print(usage, file=sys.stderr)
        return 2
    dvc_argv = ["plots", *argv]

    from dvc.cli import DvcParserError, parse_args
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    # Parse with DVC's own parser first: it validates the arguments (and prints DVC's help for -h)
    # and tells us -o/--json/--show-vega, which decide whether and where a page is written.
    try:
        args = parse_args(dvc_argv)
    except DvcParserError:
        return 254  # DVC already printed the error and usage; 254 is what `dvc` exits with
    except SystemExit as exc:  # -h/--help
        return exc.code if isinstance(exc.code, int) else 0
    if getattr(args, "html_template", None):
        print("offline_plots: do not pass --html-template; this command supplies its own", file=sys.stderr)
        return 2
    try:
        dvc_dir = Repo.find_dvc_dir()
    except NotDvcRepoError as exc:
        print(f"offline_plots: {exc}", file=sys.stderr)
        return 253  # as `dvc` does outside a repository

    writes_page = not (args.json or args.show_vega)  # these print to stdout and never read a template
    extra: list[str] = []
    if writes_page:
        template = write_template(Path(dvc_dir) / "tmp" / TEMPLATE_NAME)
        extra = ["--html-template", os.fspath(template)]  # absolute: DVC reads a relative one from the cwd
    started = time.time()

    from dvc.cli import main as dvc_main

    # In-process rather than a `dvc` subprocess: one interpreter start and no reliance on `dvc` being on PATH.
    rc = int(dvc_main(["plots", argv[0], *extra, *argv[1:]]))
    if rc == 0 and writes_page:
        page = _page_path(args, dvc_dir)
        # DVC writes no page when no plot loaded; only point at one written just now.
        if page.is_file() and page.stat().st_mtime >= started - 1:
            print(f"Offline plots page (vega inlined, no network needed): {page}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
