"""The velocity lane below the piano roll: a stem per visible note, and the velocity edits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QWidget

from meloformer_app.view.notes import DENSE, one_per_pixel

if TYPE_CHECKING:
    from meloformer_app.view.roll import RollState


class VelocityLane(QWidget):
    """One stem per visible note, and the velocity edits:

    - drag a stem: that note to the velocity dragged to, the rest of the selection scaled
      by the same ratio (their contrasts kept);
    - Shift+drag, or drag where there is no stem: a ramp, a line from the press to the
      release that sets the notes between them (the selected ones, or with none selected
      every note in view of the tracks edited);

    the value is shown while dragging (``readout``), and the edit is one undo step.
    """

    def __init__(self, state: RollState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setFixedHeight(72)
        self._drag: dict | None = None
        self.readout = ""

    def _rows(self) -> np.ndarray:
        vp, table = self.state.viewport, self.state.table
        rows = table.visible(vp.tick_at(0), vp.tick_at(self.width()), 0, 127)
        editable = self.state.editable_tracks()
        if editable is not None:
            rows = rows[np.isin(table.track[rows], list(editable))]
        return rows

    def _preview(self) -> dict[int, int]:
        """Table row → the velocity the drag in progress gives it."""
        drag, table = self._drag, self.state.table
        if drag is None:
            return {}
        if drag["kind"] == "scale":
            factor = drag["velocity"] / max(drag["grabbed"], 1)
            return {row: int(np.clip(round(table.data[row, 3] * factor), 1, 127)) for row in drag["rows"]}
        (x0, v0), (x1, v1) = drag["start"], drag["end"]
        low, high = min(x0, x1), max(x0, x1)
        xs = (table.data[drag["rows"], 0] - self.state.viewport.left_tick) * self.state.viewport.px_per_tick
        result = {}
        for row, x in zip(drag["rows"], xs.tolist(), strict=True):
            if low <= x <= high:
                share = 0.0 if high == low else (x - x0) / (x1 - x0)
                result[row] = int(np.clip(round(v0 + share * (v1 - v0)), 1, 127))
        return result

    def paintEvent(self, event) -> None:  # noqa: N802
        self.state.song()
        vp, table, painter = self.state.viewport, self.state.table, QPainter(self)
        colours = self.state.colours
        painter.fillRect(self.rect(), QColor(colours.lane))
        rows = self._rows()
        selected = self.state.selected()
        views = self.state.editor.track_views()
        usable, bottom = self.height() - 4, self.height()
        velocities = table.data[:, 3].astype(float)
        for row, velocity in self._preview().items():
            velocities[row] = velocity
        xs = (table.data[rows, 0] - vp.left_tick) * vp.px_per_tick
        tops = bottom - usable * velocities[rows] / 127
        dots = len(rows) <= 3000  # stems only when they are too dense to tell apart
        for track in np.unique(table.track[rows]).tolist():
            colour = QColor(views[track].colour if track < len(views) else "#888888")
            for chosen, shade in ((False, colour), (True, colour.lighter(150))):
                mask = (table.track[rows] == track) & (selected[rows] == chosen)
                if not mask.any():
                    continue
                painter.setPen(QPen(shade, 2))
                stem_xs, stem_tops = xs[mask], tops[mask]
                if len(stem_xs) > DENSE:
                    keep = one_per_pixel(self.width(), stem_xs, stem_xs, stem_tops)
                    stem_xs, stem_tops = stem_xs[keep], stem_tops[keep]
                stems = list(zip(stem_xs.tolist(), stem_tops.tolist(), strict=True))
                painter.drawLines([QLineF(x, bottom, x, top) for x, top in stems])
                if dots:
                    painter.setBrush(shade)
                    painter.drawRects([QRectF(x - 2, top - 2, 4, 4) for x, top in stems])
        if self._drag is not None and self._drag["kind"] == "ramp":
            (x0, v0), (x1, v1) = self._drag["start"], self._drag["end"]
            painter.setPen(QPen(QColor(colours.band), 1, Qt.PenStyle.DashLine))
            painter.drawLine(QPointF(x0, bottom - usable * v0 / 127), QPointF(x1, bottom - usable * v1 / 127))
        if self.readout:
            painter.setPen(QColor(colours.ruler_text))
            painter.drawText(QPointF(6, 14), self.readout)
        painter.end()

    def _velocity_at(self, y: float) -> int:
        return int(np.clip(round((self.height() - y) / (self.height() - 4) * 127), 1, 127))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        vp, table, editor = self.state.viewport, self.state.table, self.state.editor
        rows = self._rows()
        if not len(rows):
            return
        x, velocity = event.position().x(), self._velocity_at(event.position().y())
        xs = (table.data[rows, 0] - vp.left_tick) * vp.px_per_tick
        nearest = int(rows[np.argmin(np.abs(xs - x))])
        on_stem = abs(vp.x(table.data[nearest, 0]) - x) <= 8
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if on_stem and not shift:
            ref = table.ref(nearest)
            if ref not in editor.selection():
                editor.select({ref})
            chosen = self.state.selected()
            self._drag = {"kind": "scale", "rows": np.flatnonzero(chosen).tolist(),
                          "grabbed": int(table.data[nearest, 3]), "velocity": velocity}  # fmt: skip
        else:
            chosen = self.state.selected()
            scope = [row for row in rows.tolist() if chosen[row]] or rows.tolist()
            self._drag = {"kind": "ramp", "rows": scope, "start": (x, velocity), "end": (x, velocity)}
        self._show_readout()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            return
        velocity = self._velocity_at(event.position().y())
        if self._drag["kind"] == "scale":
            self._drag["velocity"] = velocity
        else:
            self._drag["end"] = (event.position().x(), velocity)
        self._show_readout()

    def _show_readout(self) -> None:
        drag = self._drag
        if drag["kind"] == "scale":
            ratio = drag["velocity"] / max(drag["grabbed"], 1)
            self.readout = f"velocity {drag['velocity']}" + (f"  (×{ratio:.2f})" if len(drag["rows"]) > 1 else "")
        else:
            self.readout = f"ramp {drag['start'][1]} → {drag['end'][1]}"
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            return
        self.mouseMoveEvent(event)
        changes, text = self._preview(), self.readout
        self._drag, self.readout = None, ""
        table = self.state.table
        velocities = {table.ref(row): velocity for row, velocity in changes.items()}
        if velocities:
            self.state.editor.set_velocities(velocities, text[0].upper() + text[1:])
        self.update()
