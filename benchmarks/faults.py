"""Fault injection: what happens to the index when things go wrong.

    python benchmarks/faults.py          # prints one line per scenario
    python benchmarks/faults.py --json   # … and a JSON object of the results last

Every scenario runs the real ``kb`` command on a temporary copy of ``corpus/`` (the real
corpus and index are never touched) and checks that nothing is lost:

* killed_build     a build killed with SIGKILL midway leaves the previous index searchable;
                   the next build removes the dead build's leftovers
* full_disk        a build whose writes fail (file size limit, as on a full disk) exits with
                   a clear message and leaves the previous index searchable
* truncated_file   a truncated index file is detected at load: clear message, exit code 1
* corrupted_file   one flipped byte in an index file is detected the same way
* bad_new_build    a running server offered a damaged new build keeps answering from the
                   old one
* bad_corpus_row   a CSV with one bad row is rejected whole, naming the row; corpus unchanged
* bad_corpus_edit  a hand edit that breaks a corpus file stops the build, naming the file;
                   the index stays as it was

Exit code 0 when every scenario behaves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from common import Workspace, get, kb_server, wait_ready, workspace

QUERY = "看護師不足"


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


def _kill_build(ws: Workspace, when: Callable[[], bool]) -> None:
    build = subprocess.Popen(
        [sys.executable, "-m", "kb", "build"], env=ws.env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not when() and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    build.send_signal(signal.SIGKILL)
    build.wait()


def killed_build(ws: Workspace) -> dict:
    """Kill one build while it embeds, and one while it writes its files."""
    before, top = ws.live(), top_hit(ws)
    shutil.rmtree(ws.index / "cache")  # nothing cached: the build has to embed, slowly
    started = time.monotonic()
    _kill_build(ws, lambda: time.monotonic() - started > 1.5)
    while_embedding = ws.live() == before and top_hit(ws) == top
    _kill_build(ws, lambda: bool(list((ws.index / "builds").glob(".*.partial"))))
    leftovers = len(list((ws.index / "builds").glob(".*.partial")))
    while_writing = ws.live() == before and top_hit(ws) == top
    rebuilt = ws.kb("build").returncode == 0
    cleaned = not list((ws.index / "builds").glob(".*.partial"))
    return {
        "ok": while_embedding and while_writing and rebuilt and cleaned,
        "detail": f"killed while embedding → previous index searchable: {while_embedding}; "
        f"killed while writing ({leftovers} staging folder left) → searchable: {while_writing}; "
        f"next build removed the leftovers: {cleaned}",
    }


def full_disk(ws: Workspace) -> dict:
    before, top = ws.live(), top_hit(ws)
    ws.corpus.joinpath("tables", "2017-atsugi.yaml").write_text(
        ws.corpus.joinpath("tables", "2017-atsugi.yaml")
        .read_text(encoding="utf-8")
        .replace("。", "。 ", 3),
        encoding="utf-8",
    )

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
    partials = list((ws.index / "builds").glob(".*.partial"))
    ok = (
        done.returncode == 1
        and "エラー" in done.stderr
        and ws.live() == before
        and top_hit(ws) == top
    )
    return {
        "ok": ok and not partials,
        "detail": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}; "
        f"previous index searchable: {top_hit(ws) == top}",
    }


def _damaged(ws: Workspace, damage: Callable[[Path], None], expected: str) -> dict:
    live = ws.live()
    backup = Path(tempfile.mkdtemp()) / "build"
    shutil.copytree(live, backup)
    damage(live / "dense.faiss")
    done = ws.kb("search", QUERY)
    shutil.rmtree(live)
    shutil.copytree(backup, live)
    return {
        "ok": done.returncode == 1 and expected in done.stderr and "Traceback" not in done.stderr,
        "detail": f"exit {done.returncode}: {done.stderr.strip()}",
    }


def truncated_file(ws: Workspace) -> dict:
    def truncate(path: Path) -> None:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)

    return _damaged(ws, truncate, "途中までしか書かれていません")


def corrupted_file(ws: Workspace) -> dict:
    def flip(path: Path) -> None:
        with open(path, "r+b") as f:
            f.seek(path.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))

    return _damaged(ws, flip, "中身が壊れています")


def bad_new_build(ws: Workspace) -> dict:
    with kb_server(ws.env, stderr=subprocess.PIPE) as (server, port):
        wait_ready(port, time.monotonic() + 60)
        before = json.loads(get(port, "/api/status")[1])["build_id"]
        broken = ws.index / "builds" / "29991231T000000000000Z"
        shutil.copytree(ws.live(), broken)
        (broken / "chunks.sqlite").write_bytes(b"not a database")
        link = ws.index / ".current.faults"
        link.symlink_to(broken.relative_to(ws.index))
        os.replace(link, ws.index / "current")
        statuses = [get(port, f"/api/search?q={quote(q)}")[0] for q in ("nurse", "看護", "研修")]
        after = json.loads(get(port, "/api/status")[1])["build_id"]
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    ok = statuses == [200, 200, 200] and after == before and "前の索引で検索を続けます" in stderr
    return {
        "ok": ok,
        "detail": f"answers {statuses}, still on build {after}; server said: {stderr.strip()[-70:]}",
    }


def bad_corpus_row(ws: Workspace) -> dict:
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


def bad_corpus_edit(ws: Workspace) -> dict:
    before, top = ws.live(), top_hit(ws)
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


SCENARIOS = [
    truncated_file,
    corrupted_file,
    bad_new_build,
    bad_corpus_row,
    bad_corpus_edit,
    full_disk,
    killed_build,
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    with workspace("kb-faults-") as ws:
        ws.kb("build", check=True)
        for scenario in SCENARIOS:
            started = time.monotonic()
            result = scenario(ws)
            result["seconds"] = round(time.monotonic() - started, 2)
            results[scenario.__name__] = result
            print(
                f"{'OK ' if result['ok'] else 'FAIL'} {scenario.__name__:16} {result['seconds']:6.1f} s  {result['detail']}"
            )
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
    sys.exit(0 if all(r["ok"] for r in results.values()) else 1)


if __name__ == "__main__":
    main()
