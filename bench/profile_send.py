"""Where one sending process's time goes: py-spy samples of `bench/send.py`'s send.

Starts Postfix's smtp-sink, builds the same site as `bench/send.py` with N subscribers,
and records our send (snapshot and delivery, one process) with py-spy; prints the share
of the samples in the event loop per part (ours and aiosmtplib's) and the functions that
were running most often. Needs py-spy (`pip install py-spy`; not a dependency).

    python bench/profile_send.py [N]
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from send import free_port, make_site, start_sink  # noqa: E402

# first match wins, over the whole stack (or, for "leaf", the running function only)
PARTS = [
    ("socket writes", r"_SelectorSocketTransport\.write \(", "stack"),
    ("aiosmtplib data(): line endings and dot-stuffing over each message",
     r"normalize_message_line_endings|execute_data_command \(", "leaf"),
    ("building each personal message", r"\(newsletter/(message|tokens)\.py|greeting \(",
     "stack"),
    ("journal (results committed together)", r"Store\.record|Sender\._flush", "stack"),
    ("checking the subscriber is still active", r"Store\.target", "stack"),
    ("claims", r"newsletter/claims\.py", "stack"),
    ("aiosmtplib commands, asyncio, the rest of the sender", r"", "stack"),
]

def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            make_site(Path(tmp), port, count, 10)
            raw = Path(tmp) / "samples.txt"
            subprocess.run([spy, "record", "-r", "250", "-f", "raw", "-o", str(raw), "--",
                            sys.executable, str(HERE / "send.py"), "--child", "ours", tmp],
                           check=True, capture_output=True, timeout=3600)
            lines = raw.read_text().splitlines()
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    parts: collections.Counter[str] = collections.Counter()
    running: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if "run_forever" not in stack:  # the send's event loop only, not the setup
            continue
        total += int(n)
        leaf = stack.rpartition(";")[2]
        parts[next(name for name, pattern, where in PARTS
                   if re.search(pattern, leaf if where == "leaf" else stack))] += int(n)
        running[re.sub(r":\d+\)", ")", leaf)] += int(n)
    print(f"{count:,} messages, {total:,} samples of the send loop (py-spy, 250 Hz)")
    for name, _, _ in PARTS:
        print(f"  {parts[name] / total:6.1%}  {name}")
    print("running most often:")
    for name, n in running.most_common(8):
        print(f"  {n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
