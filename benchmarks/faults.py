"""Fault injection: what happens to the index when things go wrong.

    python benchmarks/faults.py          # prints one line per scenario
    python benchmarks/faults.py --json   # … and a JSON object of the results last

Every scenario runs the real ``kb`` command on its own temporary copy of a freshly built
workspace (``corpus/`` and its index; the real ones are never touched), so no scenario sees
what another one did. Each starts by proving its copy healthy (a search for
:data:`QUERY` answers), injects one fault, and ends by searching again: the top cell must
be the one found before. What each checks besides:

* killed_build     a build killed with SIGKILL while it embeds (every cell edited, killed
                   when its progress bar shows some but not all cells embedded) and one
                   killed while it writes its files leave the previous index live; the
                   next build removes the dead build's leftovers
* full_disk        a build whose writes fail (file size limit, as on a full disk) exits with
                   a clear message and leaves the previous index live
* truncated_file   a truncated index file is detected at load: clear message, exit code 1
* corrupted_file   one flipped byte in an index file is detected the same way
* bad_new_build    a running server offered a damaged new build keeps answering from the
                   old one; the damaged build is then taken away again
* bad_corpus_row   a CSV with one bad row is rejected whole, naming the row; corpus unchanged
* bad_corpus_edit  a hand edit that breaks a corpus file stops the build, naming the file;
                   the index stays as it was

Exit code 0 when every scenario behaves.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import pty
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from common import Workspace, get, kb_server, wait_ready, workspace

from kb.core.fields import FIELDS
from kb.corpus.tables import load_table, save_table

QUERY = "看護師不足"
EDIT_MARK = "（障害試験で書き換え）"
# tqdm's bar on a terminal: "埋め込み:  39%|███▉      | 32/82 [00:01<00:02, 19.4件/s]"
PROGRESS = re.compile(r"埋め込み:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)")


def top_hit(ws: Workspace) -> str | None:
    """The id of the first hit for :data:`QUERY`, or None if searching fails."""
    done = ws.kb("search", QUERY, "-k", "1", "--json")
    return json.loads(done.stdout)[0]["id"] if done.returncode == 0 else None


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def partials(ws: Workspace) -> list[Path]:
    """Staging folders of unfinished builds."""
    return list((ws.index / "builds").glob(".*.partial"))


def edit_every_cell(corpus_dir: Path) -> int:
    """Append :data:`EDIT_MARK` to every cell of every table, so that no vector can be
    carried over or found in the cache; returns how many cells changed."""
    edited = 0
    for path in sorted((corpus_dir / "tables").glob("*.yaml")):
        table = load_table(path)
        for column in table.columns:
            for field in FIELDS:
                text = column.text(field)
                if text and text != "－":
                    column.cells[field] = f"{text}{EDIT_MARK}"
                    edited += 1
        save_table(table, path)
    return edited


def _build_killed_on(ws: Workspace, progress_seen: Callable[[str], bool]) -> str:
    """Run ``kb build`` with its stderr on a pseudo-terminal, so it draws its progress bar,
    and SIGKILL it as soon as ``progress_seen(stderr so far)`` holds. Returns that stderr."""
    reader, writer = pty.openpty()
    # A terminal of no width gets no bar at all: give it 24 rows of 160 columns.
    fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    build = subprocess.Popen(
        [sys.executable, "-m", "kb", "build"],
        env=ws.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=writer,
    )
    os.close(writer)
    seen = b""
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if not select.select([reader], [], [], 1)[0]:
                if build.poll() is not None:
                    break
                continue
            try:
                data = os.read(reader, 4096)
            except OSError:  # EIO: the build has exited and closed the terminal
                break
            if not data:
                break
            seen += data
            if progress_seen(seen.decode("utf-8", "replace")):
                break
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
        os.close(reader)
    return seen.decode("utf-8", "replace")


def _midway(stderr: str) -> tuple[int, int] | None:
    """(embedded, total) from the last progress bar if some but not all are embedded."""
    bars = PROGRESS.findall(stderr)
    done, total = map(int, bars[-1]) if bars else (0, 0)
    return (done, total) if 0 < done < total else None


def _kill_while_writing(ws: Workspace) -> None:
    build = subprocess.Popen(
        [sys.executable, "-m", "kb", "build"], env=ws.env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not partials(ws) and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    build.send_signal(signal.SIGKILL)
    build.wait()


def killed_build(ws: Workspace, top: str) -> dict:
    """Kill one build while it embeds, and one while it writes its files."""
    before = ws.live()
    table = ws.corpus / "tables" / "2017-atsugi.yaml"
    original = table.read_text(encoding="utf-8")
    edited = edit_every_cell(ws.corpus)
    stderr = _build_killed_on(ws, lambda text: _midway(text) is not None)
    midway = _midway(stderr)
    while_embedding = midway is not None and ws.live() == before and top_hit(ws) == top
    _kill_while_writing(ws)
    leftovers = len(partials(ws))
    while_writing = leftovers > 0 and ws.live() == before and top_hit(ws) == top
    table.write_text(original, encoding="utf-8")
    rebuilt = ws.kb("build").returncode == 0
    cleaned = not partials(ws)
    embedded = "{}/{}".format(*midway) if midway else f"never midway ({stderr.strip()[-80:]!r})"
    return {
        "ok": while_embedding and while_writing and rebuilt and cleaned,
        "detail": f"{edited} cells edited, killed at {embedded} embedded → previous index "
        f"searchable: {while_embedding}; killed while writing ({leftovers} staging folder "
        f"left) → searchable: {while_writing}; next build removed the leftovers: {cleaned}",
    }


def full_disk(ws: Workspace, top: str) -> dict:
    before = ws.live()
    table = ws.corpus / "tables" / "2017-atsugi.yaml"
    original = table.read_text(encoding="utf-8")
    table.write_text(original.replace("。", "。 ", 3), encoding="utf-8")

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    done = subprocess.run(
        [sys.executable, "-m", "kb", "build"],
        env=ws.env,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
    )
    table.write_text(original, encoding="utf-8")
    searchable = ws.live() == before and top_hit(ws) == top
    ok = done.returncode == 1 and "エラー" in done.stderr and searchable and not partials(ws)
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return {
        "ok": ok,
        "detail": f"exit {done.returncode}: {last}; previous index searchable: {searchable}",
    }


def _damaged(ws: Workspace, top: str, damage: Callable[[Path], None], expected: str) -> dict:
    live = ws.live()
    kept = ws.index.parent / "kept-build"
    shutil.copytree(live, kept)
    damage(live / "dense.faiss")
    done = ws.kb("search", QUERY)
    shutil.rmtree(live)
    shutil.copytree(kept, live)
    searchable = top_hit(ws) == top
    refused = done.returncode == 1 and expected in done.stderr and "Traceback" not in done.stderr
    return {
        "ok": refused and searchable,
        "detail": f"exit {done.returncode}: {done.stderr.strip()}; "
        f"restored build searchable: {searchable}",
    }


def truncated_file(ws: Workspace, top: str) -> dict:
    def truncate(path: Path) -> None:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)

    return _damaged(ws, top, truncate, "途中までしか書かれていません")


def corrupted_file(ws: Workspace, top: str) -> dict:
    def flip(path: Path) -> None:
        with open(path, "r+b") as f:
            f.seek(path.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))

    return _damaged(ws, top, flip, "中身が壊れています")


def _point_current(ws: Workspace, build: Path) -> None:
    link = ws.index / ".current.faults"
    link.symlink_to(build.relative_to(ws.index))
    os.replace(link, ws.index / "current")


def _api_top(port: int) -> str | None:
    status, body = get(port, f"/api/search?q={quote(QUERY)}&k=1")
    return json.loads(body)["hits"][0]["id"] if status == 200 else None


def bad_new_build(ws: Workspace, top: str) -> dict:
    """Offer a running server a damaged build, then put the live build back as it was."""
    before = ws.live()
    broken = ws.index / "builds" / "29991231T000000000000Z"
    with kb_server(ws.env, stderr=subprocess.PIPE) as (server, port):
        wait_ready(port, time.monotonic() + 60)
        build_before = json.loads(get(port, "/api/status")[1])["build_id"]
        served_before = _api_top(port)
        shutil.copytree(before, broken)
        (broken / "chunks.sqlite").write_bytes(b"not a database")
        _point_current(ws, broken)
        statuses = [get(port, f"/api/search?q={quote(q)}")[0] for q in ("nurse", "看護", "研修")]
        served_after = _api_top(port)
        build_after = json.loads(get(port, "/api/status")[1])["build_id"]
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    _point_current(ws, before)
    shutil.rmtree(broken)
    restored = ws.live() == before and not broken.exists()
    ok = (
        statuses == [200, 200, 200]
        and served_before == served_after == top
        and build_after == build_before
        and "前の索引で検索を続けます" in stderr
        and restored
    )
    return {
        "ok": ok,
        "detail": f"answers {statuses}, top cell {served_before} → {served_after}, still on "
        f"build {build_after}; server said: {stderr.strip()[-70:]}; live build restored: {restored}",
    }


def bad_corpus_row(ws: Workspace, top: str) -> dict:
    before = digest(ws.corpus)
    sheet = ws.corpus.parent / "next-year.csv"
    rows = [
        "団体名,厚木市立病院",
        "課題区分,体制構築",
        "(１)項目・内容,８　体制構築",
        "(２)進捗状況,進めた",
        "(３)見えてきた課題,人が足りない",
        "(９)感想,よかった",
        "(５)来年度以降の取組み,続ける",
    ]
    sheet.write_text("\n".join(rows) + "\n", encoding="utf-8")
    done = ws.kb(
        "ingest", str(sheet), "--year", "2018", "--council", "厚木地域小児等在宅医療連絡会議"
    )
    ok = done.returncode == 1 and "6行目" in done.stderr and digest(ws.corpus) == before
    return {"ok": ok, "detail": f"exit {done.returncode}: {done.stderr.strip()}"}


def bad_corpus_edit(ws: Workspace, top: str) -> dict:
    before = ws.live()
    table = ws.corpus / "tables" / "2017-atsugi.yaml"
    original = table.read_text(encoding="utf-8")
    table.write_text(original.replace("  page: 2\n", "  page: [\n", 1), encoding="utf-8")
    done = ws.kb("build")
    table.write_text(original, encoding="utf-8")
    ok = (
        done.returncode == 1
        and "2017-atsugi.yaml" in done.stderr
        and ws.live() == before
        and top_hit(ws) == top
    )
    return {"ok": ok, "detail": f"exit {done.returncode}: {done.stderr.strip()}"}


Scenario = Callable[[Workspace, str], dict]
SCENARIOS: list[Scenario] = [
    truncated_file,
    corrupted_file,
    bad_new_build,
    bad_corpus_row,
    bad_corpus_edit,
    full_disk,
    killed_build,
]


def run(scenario: Scenario, healthy: Workspace) -> dict:
    """``scenario`` on its own copy of the healthy workspace: it must start searchable and
    end with the same top cell for :data:`QUERY` as before the fault."""
    with tempfile.TemporaryDirectory(prefix=f"kb-{scenario.__name__}-") as tmp:
        ws = healthy.copy(Path(tmp))
        top = top_hit(ws)
        if top is None:
            return {"ok": False, "detail": "the copy was not searchable before the fault"}
        result = scenario(ws, top)
        after = top_hit(ws)
    result["ok"] = result["ok"] and after == top
    result["detail"] += f"; top cell before {top}, after {after}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    with workspace("kb-faults-") as healthy:
        healthy.kb("build", check=True)
        for scenario in SCENARIOS:
            started = time.monotonic()
            result = run(scenario, healthy)
            result["seconds"] = round(time.monotonic() - started, 2)
            results[scenario.__name__] = result
            print(
                f"{'OK ' if result['ok'] else 'FAIL'} {scenario.__name__:16} "
                f"{result['seconds']:6.1f} s  {result['detail']}",
                flush=True,
            )
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
    sys.exit(0 if all(r["ok"] for r in results.values()) else 1)


if __name__ == "__main__":
    main()
