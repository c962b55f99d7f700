"""`newsletter send --workers N`: N processes on this machine share one edition.

Each worker is a whole sender with its own database connection and SMTP connections; the
claims in the journal (`claims.py`) keep them from sending the same delivery. The parent
only shows the combined progress, forwards a stop, and adds the workers' reports up. A
worker that dies leaves claims the others take over at once (its pid is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from newsletter.config import Settings
from newsletter.errors import DeliveryError, NewsletterError
from newsletter.render import Renderer
from newsletter.send import Sender
from newsletter.send_report import SendEvent, SendOptions, SendReport, Settled
from newsletter.store import Store
from newsletter.tokens import Tokens
from newsletter.transport import make_transport

Progress = Callable[[int], None]  # deliveries settled so far, over every worker


async def deliver(settings: Settings, edition_id: int, options: SendOptions, *,
                  tokens: Tokens, renderer: Renderer, store: Store, started: float,
                  observer: Callable[[SendEvent, SendReport], None]) -> SendReport:
    """One sender until the edition is done or a SIGINT/SIGTERM stops it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sender = Sender(store, settings, edition_id, make_transport(settings), options,
                    renderer=renderer, tokens=tokens, stop=stop, on_event=observer,
                    started=started)
    try:
        return await sender.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _worker(settings: Settings, edition_id: int, options: SendOptions, tokens: Tokens,
            started: float, index: int, settled: Any, results: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's forwarding handler
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def count(event: SendEvent, report: SendReport) -> None:
        if isinstance(event, Settled):
            settled[index] = report.done

    with Store(settings.store_location) as store:  # never the parent's connection
        try:
            report = asyncio.run(deliver(settings, edition_id, options, tokens=tokens,
                                         renderer=Renderer(settings), store=store,
                                         started=started, observer=count))
        except NewsletterError as exc:
            report = SendReport(edition_id, last_error=str(exc), fatal=str(exc))
    results.put((index, report))


def run_workers(settings: Settings, edition_id: int, options: SendOptions, workers: int, *,
                tokens: Tokens, progress: Progress | None = None) -> SendReport:
    """Run `workers` sender processes to the end and combine what they report."""
    context = multiprocessing.get_context("fork")
    settled = context.Array("l", workers)
    results = context.Queue()
    started = time.time()
    # --limit and --rate are for the whole run: split them over the workers
    options = replace(options, rate=options.rate / workers)
    shares = [None if options.limit is None else
              options.limit // workers + (1 if n < options.limit % workers else 0)
              for n in range(workers)]
    processes = [context.Process(target=_worker, daemon=True,
                                 args=(settings, edition_id, replace(options, limit=share),
                                       tokens, started, n, settled, results))
                 for n, share in enumerate(shares) if share is None or share > 0]
    forward = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stop_all(signum: int, frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                process.terminate()  # SIGTERM: each worker stops and records as usual

    for sig in forward:
        signal.signal(sig, stop_all)
    reports: dict[int, SendReport] = {}
    try:
        for process in processes:
            process.start()
        # until every worker reported, or the ones that did not are gone (killed)
        while len(reports) < len(processes) and (
                any(p.is_alive() for p in processes) or not results.empty()):
            with contextlib.suppress(queue.Empty):
                index, report = results.get(timeout=0.25)
                reports[index] = report
            if progress is not None:
                progress(sum(settled[:]))
        for process in processes:
            process.join()
    finally:
        for sig, previous in forward.items():
            signal.signal(sig, previous)
    combined = SendReport.combine(edition_id, list(reports.values()))
    combined.workers_lost = len(processes) - len(reports)
    if combined.fatal and not combined.done:
        raise DeliveryError(combined.fatal)
    return combined

