"""The documentation stays true: every shell and Python example in README.md and docs/*.md runs.

Each page's fenced ```bash and ```python blocks run in order, in one fresh folder per page (so a
block may use what an earlier block of the same page wrote, as a reader following the page would),
each in its own process, importing this checkout, offline, with the bundled test-size models and
``lorat demo-data``. A block that cannot run here (released weights, a GPU, a real dataset, the
network, installing packages) is marked right before its fence with ``<!-- not run: REASON -->``;
the reason is required. Other fences must say what they hold (``text``, ``ini``, ``yaml``, ``json`` or
a bare fence for shown output), so a misspelt ```sh block cannot silently escape.

The structure checks (page lengths, links, markers, issue-16 content) are quick; running the
examples is the slow tier.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple

import pytest

from run_cli import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN = {"bash", "python"}
SHOWN = {"", "text", "ini", "yaml", "json"}
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[^\s`]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
HARNESS_PAGES = ("got10k.md", "vot.md", "pytracking.md")


class Block(NamedTuple):
    page: Path
    line: int          # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str       # the marker's reason, "" when the block runs


def blocks(page: Path) -> List[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group("indent")), m.group("lang"), i
        body, i = [], i + 1
        while i < len(lines) and not re.match(r"^ {0,%d}```\s*$" % indent, lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.name}:{start + 1}: fence never closed")
        previous = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(previous)
        out.append(Block(page, start + 1, lang, "\n".join(body) + "\n",
                         marker.group("reason").strip() if marker else ""))
        if marker and not marker.group("reason").strip():
            raise AssertionError(f"{page.name}:{start + 1}: '<!-- not run: -->' needs a reason")
        i += 1
    return out


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


# ---------------------------------------------------------------- structure (quick)

def test_every_fence_is_run_or_marked_with_a_reason_or_shown_output():
    for page in PAGES:
        for b in blocks(page):     # raises on a marker without a reason
            assert b.lang in RUN | SHOWN, f"{page_id(page)}:{b.line}: fence language {b.lang!r}: use bash or python " \
                                          f"(run) or text/ini/yaml/json (shown)"
            assert not (b.not_run and b.lang not in RUN), f"{page_id(page)}:{b.line}: a not-run marker on a shown block"


def test_marker_parser_requires_a_reason(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("<!-- not run: needs the released B-224 weights -->\n```bash\nlorat track x\n```\n")
    assert blocks(page)[0].not_run == "needs the released B-224 weights"
    page.write_text("<!-- not run: -->\n```bash\nlorat track x\n```\n")
    with pytest.raises(AssertionError, match="needs a reason"):
        blocks(page)


def test_most_examples_run():
    runnable = [b for p in PAGES for b in blocks(p) if b.lang in RUN]
    marked = [b for b in runnable if b.not_run]
    assert len(runnable) >= 30 and len(marked) <= len(runnable) // 3, (len(runnable), len(marked))


def test_readme_is_short_and_links_every_docs_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 260
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"
    for name in ("cli", "training", "got10k", "vot", "pytracking", "masks", "weights", "reproducibility", "benchmarks"):
        assert (REPO / "docs" / f"{name}.md").is_file(), name
    # the two set-up commands come first
    first_fence = next(b for b in blocks(REPO / "README.md") if b.lang == "bash")
    assert "pip install" in first_fence.code and "python -m pytest" in first_fence.code


def test_relative_links_resolve():
    link = re.compile(r"\]\((?!https?://|#)([^)#\s]+)(?:#[^)]*)?\)")
    for page in PAGES:
        for target in link.findall(page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page_id(page)} links {target}, which does not exist"


def test_summation_order_caveat_is_said_once():
    pattern = re.compile(r"summation order|sum in another order|sums? run in another order", re.I)
    hits = {page_id(p): len(pattern.findall(p.read_text(encoding="utf-8"))) for p in PAGES}
    assert hits.get("docs/reproducibility.md", 0) >= 1
    others = {k: v for k, v in hits.items() if v and k != "docs/reproducibility.md"}
    assert not others, f"the float32 summation-order caveat belongs in docs/reproducibility.md only: {others}"


def test_both_test_tiers_are_documented():
    code = "".join(b.code for b in blocks(REPO / "README.md"))
    assert 'python -m pytest -m "not slow"' in code and re.search(r"^python -m pytest$", code, re.M)


# ---------------------------------------------------------------- issue 16 content (quick)

def test_cpu_only_install_command_next_to_the_default_one():
    b = [b for b in blocks(REPO / "README.md") if "download.pytorch.org/whl/cpu" in b.code]
    assert b, "README gives no CPU-only install command"
    assert "--index-url https://download.pytorch.org/whl/cpu" in b[0].code and "torch==" in b[0].code
    assert b[0].not_run, "the CPU-only install needs the network: mark it not run"


@pytest.mark.parametrize("page", HARNESS_PAGES)
def test_every_harness_page_says_how_to_set_the_threads(page):
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    assert "OMP_NUM_THREADS=1" in text and "torch.set_num_threads" in text, page


def test_pytracking_page_installs_wheel_and_keeps_lorat_importable_for_analysis():
    text = (REPO / "docs" / "pytracking.md").read_text(encoding="utf-8")
    install = next(b.code for b in blocks(REPO / "docs" / "pytracking.md") if "visdom==0.2.4" in b.code)
    assert install.index("wheel") < install.index("--no-build-isolation visdom==0.2.4"), install
    assert "trackerlist()" in text and re.search(r"analysis\s+environment[^.]*lorat-tracker", text)


def test_vot_page_shows_nodownload_and_placing_sequences_offline():
    vot_blocks = blocks(REPO / "docs" / "vot.md")
    runnable = [b for b in vot_blocks if b.lang == "bash" and not b.not_run]
    offline = next(b for b in runnable if "vot initialize" in b.code)
    assert "--nodownload" in offline.code and "sequences" in offline.code
    assert any("lorat vot workspace" in b.code for b in runnable)


# ---------------------------------------------------------------- the examples themselves (slow)

def run_block(block: Block, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    argv = ["bash", "-euo", "pipefail", "-c", block.code] if block.lang == "bash" else [sys.executable, "-c", block.code]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


# Shown output right after a run block is what that block prints: its lines must appear in the output, in
# order. "..." in a shown line stands for any text (timings, machine paths); numbers agree within
# NUMBER_TOLERANCE (boxes are within 1e-3 px of the official pipeline on every CPU, printed to 3 decimals).
NUMBER_TOLERANCE = 2e-3
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _line_pattern(shown: str) -> "re.Pattern":
    parts = []
    for k, piece in enumerate(shown.strip().split("...")):
        if k:
            parts.append(".*?")
        pos = 0
        for m in _NUMBER.finditer(piece):
            parts.append(_text(piece[pos:m.start()]))
            parts.append(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")
            pos = m.end()
        parts.append(_text(piece[pos:]))
    return re.compile(r"\s*" + "".join(parts) + r"\s*$")


def _text(text: str) -> str:
    """Literal text, any run of spaces matching any run (table columns widen with the numbers)."""
    return r"\s+".join(re.escape(chunk) for chunk in re.split(r"\s+", text))


def _line_matches(shown: str, actual: str) -> bool:
    m = _line_pattern(shown).match(actual)
    if not m:
        return False
    expected = [float(v) for v in _NUMBER.findall(shown.replace("...", " "))]
    got = [float(v) for v in m.groups()]
    return len(expected) == len(got) and all(abs(a - b) <= NUMBER_TOLERANCE for a, b in zip(got, expected))


def missing_output_lines(shown: str, output: str) -> List[str]:
    """The shown lines not found in ``output`` (in order; blank shown lines are layout)."""
    lines = [ln for ln in output.replace("\r", "\n").splitlines() if ln.strip()]
    missing, at = [], 0
    for want in (ln for ln in shown.splitlines() if ln.strip()):
        k = next((i for i in range(at, len(lines)) if _line_matches(want, lines[i])), None)
        if k is None:
            missing.append(want)
        else:
            at = k + 1
    return missing


def test_shown_output_matching():
    assert missing_output_lines("[110.081, 34.658] 0.5053", "[110.0815, 34.657] 0.5053\n") == []
    assert missing_output_lines("[110.081, 34.658] 0.5053", "[np.float64(110.081), 34.658] 0.5053") != []
    assert missing_output_lines("done in ... s; boxes -> ...", "done in 5.1 s; boxes -> /tmp/x") == []
    assert missing_output_lines("a 1\nb 2", "b 2\na 1") == ["b 2"]  # order counts
    assert missing_output_lines("0.347", "0.351") == ["0.347"]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_examples_run(page, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               MPLBACKEND="Agg")
    page_blocks = blocks(page)
    for k, block in enumerate(page_blocks):
        if block.lang not in RUN or block.not_run:
            continue
        proc = run_block(block, tmp_path, env)
        assert proc.returncode == 0, (f"{page_id(page)}:{block.line} ({block.lang}) exited {proc.returncode}\n"
                                      f"{block.code}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
        shown = page_blocks[k + 1] if k + 1 < len(page_blocks) else None
        if shown is not None and shown.lang == "" and _adjacent(page, block, shown):
            # A terminal interleaves the two streams; the page may show either first.
            missing = min((missing_output_lines(shown.code, a + "\n" + b)
                           for a, b in ((proc.stdout, proc.stderr), (proc.stderr, proc.stdout))), key=len)
            assert not missing, (f"{page_id(page)}:{shown.line}: the page shows output this block does not print:"
                                 f"\n{missing}\n--- printed\n{(proc.stdout + proc.stderr)[-3000:]}")


def _adjacent(page: Path, block: Block, shown: Block) -> bool:
    """Nothing but blank lines between the run block's closing fence and the shown block's opening one."""
    lines = page.read_text(encoding="utf-8").splitlines()
    end = block.line + block.code.count("\n")  # the closing fence's 0-based index
    return all(not ln.strip() for ln in lines[end + 1:shown.line - 1])
