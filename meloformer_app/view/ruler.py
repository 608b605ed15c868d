"""The bar ruler above the piano roll: bars, beats, and tempo, metre and key changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QWidget

from meloformer_app.position import MAJOR_KEYS, MINOR_KEYS
from meloformer_core.music import Song

if TYPE_CHECKING:
    from meloformer_app.view.roll import RollState


class Ruler(QWidget):
    """Bar numbers, beats, and the tempo, metre and key changes; a click moves the playhead, a
    drag across bars sets a loop region over them (``loop_dragged``), a double-click on a bar
    asks for its tempo, metre and key (``edit_bar``: the bar's start)."""

    seek = Signal(int)
    edit_bar = Signal(int)
    loop_dragged = Signal(int, int)  # a loop region, whole bars: its start and end ticks

    def __init__(self, state: RollState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setFixedHeight(26)
        self._pressed: float | None = None  # where a drag began (x)

    def paintEvent(self, event) -> None:  # noqa: N802
        song, vp, painter = self.state.song(), self.state.viewport, QPainter(self)
        colours = self.state.colours
        painter.fillRect(self.rect(), QColor(colours.ruler))
        first, last = vp.tick_at(0), vp.tick_at(self.width())
        generated = self.state.editor.generated_range()
        if generated is not None:
            painter.fillRect(QRectF(vp.x(generated[0]), 0, vp.x(generated[1]) - vp.x(generated[0]), self.height()),
                             QColor(255, 220, 90, 110))  # fmt: skip
        if self.state.loop is not None:
            start, end = self.state.loop
            painter.fillRect(QRectF(vp.x(start), 0, vp.x(end) - vp.x(start), self.height()), QColor(80, 200, 120, 90))
        changes = conductor_labels(song)
        # labels start a little left of the view so a long one scrolling in is not cut;
        # they are 40 px apart at least, lines 3 px (bar numbers count from 1)
        labelled = dict(self.state.bars.between(first - song.resolution * 16, last, 40 / vp.px_per_tick))
        free = -1e9  # labels never run into each other: each starts past the end of the one before
        metrics = painter.fontMetrics()
        for number, bar in self.state.bars.between(first - song.resolution * 16, last, 3 / vp.px_per_tick):
            x = vp.x(bar)
            painter.setPen(QColor(colours.ruler_text))
            painter.drawLine(QPointF(x, 12), QPointF(x, self.height()))
            text = f"{number + 1 if number in labelled else ''} {changes.get(bar, '')}".strip()
            if text and x + 3 >= free:
                painter.drawText(QPointF(x + 3, 11), text)
                free = x + 3 + metrics.horizontalAdvance(text) + 6
        if song.resolution * vp.px_per_tick >= 6:
            painter.setPen(QColor(colours.ruler_beat))
            tick = int(first // song.resolution) * song.resolution
            while tick <= last:
                painter.drawLine(QPointF(vp.x(tick), 20), QPointF(vp.x(tick), self.height()))
                tick += song.resolution
        if self.state.playhead is not None:
            painter.setPen(QPen(QColor(colours.playhead), 2))
            painter.drawLine(QPointF(vp.x(self.state.playhead), 0), QPointF(vp.x(self.state.playhead), self.height()))
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        tick = max(0, round(self.state.viewport.tick_at(event.position().x())))
        self._pressed = event.position().x()
        self.seek.emit(tick)

    def _bars_between(self, x0: float, x1: float) -> tuple[int, int]:
        """The whole bars from the one at ``x0`` to the one at ``x1``, as ticks."""
        self.state.song()
        bars, vp = self.state.bars, self.state.viewport
        low, high = sorted(max(0, round(vp.tick_at(x))) for x in (x0, x1))
        last = bars.bar_at(high)[1]
        return bars.bar_at(low)[1], bars.bar_at(last + bars.bar_ticks_at(last))[1]

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pressed is not None and abs(event.position().x() - self._pressed) > 6:
            self.state.loop = self._bars_between(self._pressed, event.position().x())
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pressed is not None and abs(event.position().x() - self._pressed) > 6:
            self.state.loop = self._bars_between(self._pressed, event.position().x())
            self.loop_dragged.emit(*self.state.loop)
        self._pressed = None

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        tick = max(0, round(self.state.viewport.tick_at(event.position().x())))
        self.state.song()
        self.edit_bar.emit(self.state.bars.bar_at(tick)[1])


def conductor_labels(song: Song) -> dict[int, str]:
    """Tick → what changes there: the metre ("3/4"), the tempo ("♩=96") and the key ("G")."""
    labels: dict[int, list[str]] = {}
    for ts in song.time_signatures:
        labels.setdefault(ts.tick, []).append(f"{ts.numerator}/{ts.denominator}")
    for tempo in song.tempos:
        labels.setdefault(tempo.tick, []).append(f"♩={round(tempo.qpm, 1):g}")
    for key in song.key_signatures:
        names = MINOR_KEYS if key.minor else MAJOR_KEYS
        labels.setdefault(key.tick, []).append(f"{names[key.sharps + 7]}{'m' if key.minor else ''}")
    return {tick: " ".join(parts) for tick, parts in labels.items()}
