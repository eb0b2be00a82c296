"""The progress bar: drawn only on a terminal, throttled, cleared at the end."""

from __future__ import annotations

import io

from memoryd.client.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_when_the_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress("import", 100, stream=stream)
    assert not progress.enabled
    progress.update(50)
    progress.finish()
    assert stream.getvalue() == ""


def test_on_a_terminal_draws_a_bar_and_clears_it() -> None:
    stream = Terminal()
    progress = Progress("import", 200, " bytes", stream=stream)
    assert progress.enabled
    progress.update(100)
    progress.update(150)  # within the redraw interval: not drawn
    assert stream.getvalue() == "\rimport [" + "#" * 15 + "-" * 15 + "] 100/200 bytes  50.0%"
    assert progress.line().endswith("150/200 bytes  75.0%")
    progress.finish()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_a_zero_total_or_overrun_never_breaks_the_line() -> None:
    progress = Progress("export", 0, stream=Terminal())
    assert progress.line().endswith("0/0   0.0%")
    progress.update(7, 5)
    assert progress.line().endswith("7/5 100.0%")
