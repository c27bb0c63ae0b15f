"""Lean photos off the trigger's path: a worker that makes a stored report's WebP.

With ``camera.format`` webp the report is made and stored at once naming its JPEG (the
protocol names a photo by its final sha256 and size); the delivery holds it (``holds``)
while this worker encodes the WebP of the same picture and stores the report again
naming it.  The delivery's own thread lets a finished report go (``take_done``) before it
reads what to send, so it never sends a copy read before the swap; a WebP that does not
fit (or a failure) lets the report go with its JPEG.  The report never waits for the
encoder, and a power cut before the swap leaves the JPEG report to send: nothing is
lost.
"""

import logging
import queue
import threading

log = logging.getLogger("gridlink.device.transcode")


class PhotoTranscoder:
    """One worker thread running photo encodings in order; reports it holds back."""

    def __init__(self, wake=lambda: None):
        self.wake = wake               # called when a result is ready (the delivery's kick)
        self._todo = queue.Queue()
        self._lock = threading.Lock()
        self._held = set()             # report ids whose photo is being encoded
        self._done = []                # report ids whose work is over, oldest first
        self._thread = threading.Thread(target=self._run, name="transcode", daemon=True)
        self._thread.start()

    def hold(self, report_id):
        """Hold ``report_id`` back from sending until its encoding is done and taken."""
        with self._lock:
            self._held.add(report_id)

    def submit(self, report_id, work):
        """Run ``work(report_id)`` for a held report."""
        self._todo.put((report_id, work))

    def holds(self, report_id):
        with self._lock:
            return report_id in self._held

    def busy(self):
        """How many reports are held."""
        with self._lock:
            return len(self._held)

    def take_done(self):
        """The report ids whose work is over, each taken once."""
        with self._lock:
            done, self._done = self._done, []
            return done

    def release(self, report_id):
        with self._lock:
            self._held.discard(report_id)

    def stop(self):
        self._todo.put(None)

    def _run(self):
        while True:
            item = self._todo.get()
            if item is None:
                return
            report_id, work = item
            try:
                work(report_id)
            except Exception:        # the report goes with its JPEG
                log.exception("photo of report %s: WebP not made; the JPEG goes", report_id)
            with self._lock:
                self._done.append(report_id)
            self.wake()
