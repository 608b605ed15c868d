"""The piano roll: keyboard, bar ruler (`ruler.py`), note canvas and velocity lane
(`velocity.py`) around one `Viewport`.

The widgets paint; they never change the song themselves. Every gesture ends in one call
to an `Editor` (see `meloformer_app.editor`), which turns it into an undoable command.
Painting and hit tests work on a `NoteTable` (numpy columns) rebuilt when the song changes,
and only the notes inside the visible window are drawn, so 20,000 notes stay smooth.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPen, QPolygonF, QWheelEvent
from PySide6.QtWidgets import QGridLayout, QScrollBar, QWidget

from meloformer_app.theme import DARK_ROLL
from meloformer_app.view.bars import BarMap
from meloformer_app.view.geometry import Viewport
from meloformer_app.view.notes import DENSE, NoteTable, one_per_pixel
from meloformer_app.view.ruler import Ruler
from meloformer_app.view.velocity import VelocityLane
from meloformer_core.gm import DRUM_KEY_NAMES, pitch_name
from meloformer_core.music import Note, Song

BLACK_KEYS = {1, 3, 6, 8, 10}
EDGE_PX = 6  # grab the right edge of a note within this many pixels to resize it
GENERATED = QColor(255, 220, 90, 38)
MAX_SCROLL = 2**31 - 1  # a QScrollBar holds a C int; a song may end at the 32-bit tick limit
KEYBOARD_PX, DRUM_KEYBOARD_PX = 56, 132  # the keyboard's width; with a drum track selected it names the kit


class Tool(Enum):
    SELECT = "select"
    DRAW = "draw"
    ERASE = "erase"


class RollState:
    """What every part of the roll reads: the song shown, the view and the editor's state."""

    def __init__(self, editor) -> None:
        self.editor = editor
        self.viewport = Viewport()
        self.table = NoteTable.of(Song())
        self.bars = BarMap(Song())
        self._song: Song | None = None
        self.tool = Tool.SELECT
        self.snap = True
        self.playhead: int | None = None
        self.loop: tuple[int, int] | None = None  # a loop region dragged in the ruler (ticks, whole bars)
        self.colours = DARK_ROLL  # the main window sets the theme's
        self.used_kit_only = False  # with a drum track selected: rows for the kit pieces it plays only
        self._rows_key: tuple | None = None
        self._selected_key: tuple | None = None
        self._selected_mask = np.zeros(0, dtype=bool)

    def song(self) -> Song:
        song = self.editor.shown_song()
        if song is not self._song:
            self._song = song
            self.table = NoteTable.of(song)
            self.bars = BarMap(song)
            self.viewport.resolution = song.resolution
        key = (self.table, self.editor.current_track, self.used_kit_only)
        if self._rows_key is None or key[0] is not self._rows_key[0] or key[1:] != self._rows_key[1:]:
            self._rows_key = key
            self.viewport.show_rows(self.kit_rows(song))
        return song

    def kit_rows(self, song: Song) -> tuple[int, ...] | None:
        """The rows to show: with "used kit pieces only" and a drum track selected, the keys
        it plays (the whole GM kit while it plays none); otherwise every pitch (None)."""
        current = self.editor.current_track
        if not self.used_kit_only or current is None or current >= len(song.tracks) or not song.tracks[current].is_drum:
            return None
        played = np.unique(self.table.data[self.table.track == current, 1]).tolist()
        return tuple(played) if played else tuple(sorted(DRUM_KEY_NAMES))

    def selected(self) -> np.ndarray:
        """Which notes of the table are selected; kept until the song or the selection changes
        (the canvas and the velocity lane both ask on every repaint, the playhead 30 times a second)."""
        self.song()
        key = (self.table, self.editor.selection())
        if self._selected_key is None or key[0] is not self._selected_key[0] or key[1] != self._selected_key[1]:
            self._selected_key, self._selected_mask = key, self.table.mask_of(key[1])
        return self._selected_mask

    def editable_tracks(self) -> set[int] | None:
        current = self.editor.current_track
        return None if current is None else {current}

    def drums_selected(self) -> bool:
        """Whether the track being edited is a drum track: the keyboard then names the kit."""
        current, song = self.editor.current_track, self.song()
        return current is not None and current < len(song.tracks) and song.tracks[current].is_drum


class RollCanvas(QWidget):
    changed_view = Signal()

    def __init__(self, state: RollState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setMinimumSize(200, 120)
        self._drag: dict | None = None

    # --- painting -------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        song = self.state.song()
        vp, table = self.state.viewport, self.state.table
        painter = QPainter(self)
        area = event.rect()  # often a thin strip (the moving playhead): draw only what is in it
        height = self.height()
        colours = self.state.colours
        painter.fillRect(area, QColor(colours.background))
        low, high = vp.pitch_at(area.bottom() + 1), vp.pitch_at(area.top())
        drums = self.state.drums_selected()
        for pitch in vp.pitches_between(area.top(), area.bottom() + 1):
            dark = pitch not in DRUM_KEY_NAMES if drums else pitch % 12 in BLACK_KEYS  # kit pieces' rows stand out
            painter.fillRect(QRectF(area.left(), vp.y(pitch), area.width(), vp.key_height),
                             QColor(colours.row_dark if dark else colours.row_light))  # fmt: skip
        first, last = vp.tick_at(area.left() - 1), vp.tick_at(area.right() + 2)
        self._paint_grid(painter, song, first, last, height)
        generated = self.state.editor.generated_range()
        if generated is not None:
            painter.fillRect(QRectF(vp.x(generated[0]), 0, vp.x(generated[1]) - vp.x(generated[0]), height), GENERATED)
        visible = table.visible(first, last, low - 1, high + 1)
        editable = self.state.editable_tracks()
        selected = self.state.selected()
        offset = self._drag_offset()
        views = self.state.editor.track_views()
        for track in np.unique(table.track[visible]).tolist():
            rows = visible[table.track[visible] == track]
            colour = QColor(views[track].colour if track < len(views) else "#888888")
            ghost = editable is not None and track not in editable
            if ghost and vp.rows is not None:
                continue  # kit rows: another track's pitches are not these kit pieces
            muted = track < len(views) and views[track].muted
            if ghost or muted:
                colour.setAlpha(70)
            hits = track < len(song.tracks) and song.tracks[track].is_drum  # drum notes are hits, not held notes
            self._paint_notes(painter, rows[~selected[rows]], colour, QColor(colours.note_edge), hits=hits)
            if len(rows[selected[rows]]):
                self._paint_notes(painter, rows[selected[rows]], colour.lighter(150), QColor("#ffffff"), offset, hits)
        if self._drag and self._drag["kind"] == "band":
            band = QRectF(self._drag["origin"], self._drag["point"]).normalized()
            painter.setPen(QPen(QColor(colours.band), 1, Qt.PenStyle.DashLine))
            painter.fillRect(band, QColor(120, 170, 255, 40))
            painter.drawRect(band)
        if self.state.playhead is not None:
            painter.setPen(QPen(QColor(colours.playhead), 2))
            x = vp.x(self.state.playhead)
            painter.drawLine(QPointF(x, 0), QPointF(x, height))
        painter.end()

    def _paint_grid(self, painter: QPainter, song: Song, first: float, last: float, height: int) -> None:
        """Grid lines, beat lines and bar lines, each only when they are far enough apart."""
        vp = self.state.viewport
        bars = [tick for _number, tick in self.state.bars.between(first, last, 2 / vp.px_per_tick)]
        colours = self.state.colours
        for step, colour, min_px in ((vp.grid_ticks(), colours.grid, 4), (song.resolution, colours.beat, 6)):
            if step * vp.px_per_tick >= min_px:
                ticks = range(int(first // step) * step, int(last) + 1, step)
                painter.setPen(QPen(QColor(colour), 1))
                painter.drawLines([QLineF(vp.x(t), 0, vp.x(t), height) for t in ticks])
        painter.setPen(QPen(QColor(colours.bar), 1))
        painter.drawLines([QLineF(vp.x(bar), 0, vp.x(bar), height) for bar in bars])

    def _paint_notes(self, painter: QPainter, rows: np.ndarray, fill: QColor, edge: QColor,
                     offset: tuple[int, int, int] = (0, 0, 0), hits: bool = False) -> None:  # fmt: skip
        """Notes as bars as long as they sound; with ``hits`` (a drum track) as diamonds one
        row high at their onsets, whatever their length."""
        if not len(rows):
            return
        if hits:
            self._paint_hits(painter, rows, fill, edge, offset)
            return
        vp, data = self.state.viewport, self.state.table.data[rows]
        dt, dp, dd = offset
        xs = (data[:, 0] + dt - vp.left_tick) * vp.px_per_tick
        ws = np.maximum((data[:, 2] + dd).clip(min=1) * vp.px_per_tick, 2.0)
        ys = vp.y(data[:, 1] + dp)
        shown = np.isfinite(ys)  # a pitch without a row (used kit pieces only) is not drawn
        xs, ws, ys = xs[shown], ws[shown], ys[shown]
        h = max(vp.key_height - 1, 1.0)
        if len(rows) > DENSE:
            lefts, rights = xs.clip(-2, self.width() + 2), (xs + ws).clip(-2, self.width() + 2)
            keep = one_per_pixel(self.width(), lefts, rights, ys)
            xs, ws, ys = lefts[keep], np.maximum(rights[keep] - lefts[keep], 2.0), ys[keep]
        rects = [QRectF(x, y, w, h) for x, y, w in zip(xs.tolist(), ys.tolist(), ws.tolist(), strict=True)]
        painter.setPen(QPen(edge, 1) if vp.key_height >= 5 else Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawRects(rects)

    def _paint_hits(self, painter: QPainter, rows: np.ndarray, fill: QColor, edge: QColor,
                    offset: tuple[int, int, int]) -> None:  # fmt: skip
        vp, data = self.state.viewport, self.state.table.data[rows]
        xs = (data[:, 0] + offset[0] - vp.left_tick) * vp.px_per_tick
        ys = vp.y(data[:, 1] + offset[1])
        xs, ys = xs[np.isfinite(ys)], ys[np.isfinite(ys)]
        half = max(vp.key_height - 1, 2.0) / 2
        if len(rows) > DENSE:
            keep = one_per_pixel(self.width(), xs.clip(-2, self.width() + 2), xs.clip(-2, self.width() + 2), ys)
            xs, ys = xs[keep], ys[keep]
        painter.setPen(QPen(edge, 1) if vp.key_height >= 5 else Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        for x, y in zip(xs.tolist(), (ys + half).tolist(), strict=True):
            painter.drawPolygon(QPolygonF([QPointF(x, y - half), QPointF(x + half, y), QPointF(x, y + half),
                                           QPointF(x - half, y)]))  # fmt: skip

    # --- gestures -------------------------------------------------------------------------
    def _snap_on(self, event) -> bool:
        return self.state.snap and not (event.modifiers() & Qt.KeyboardModifier.AltModifier)

    def _drag_offset(self) -> tuple[int, int, int]:
        drag = self._drag
        if not drag or drag["kind"] not in ("move", "resize"):
            return (0, 0, 0)
        return (drag.get("dt", 0), drag.get("dp", 0), drag.get("dd", 0))

    def _hit(self, pos: QPointF) -> tuple[int | None, bool]:
        vp = self.state.viewport
        tick, pitch = vp.tick_at(pos.x()), vp.pitch_at(pos.y())
        index = self.state.table.hit(tick, pitch, self.state.editable_tracks(), slack_ticks=2 / vp.px_per_tick)
        if index is None:
            return None, False
        start, _, duration, _ = self.state.table.data[index]
        near_edge = vp.x(start + duration) - pos.x() <= EDGE_PX and vp.x(start + duration) - vp.x(start) > 2 * EDGE_PX
        return index, near_edge

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self.setFocus()
        editor, vp, pos = self.state.editor, self.state.viewport, event.position()
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        index, near_edge = self._hit(pos)
        if self.state.tool is Tool.ERASE:
            self._drag = {"kind": "erase", "refs": set()}
            self._erase_at(pos)
            return
        if index is not None:
            ref = self.state.table.ref(index)
            selection = editor.selection()
            if shift and ref in selection:
                editor.select(selection - {ref})
                return
            if ref not in selection:
                editor.select({ref}, add=shift)
            editor.preview_note(ref.note, ref.track)
            kind = "resize" if near_edge else "move"
            self._drag = {"kind": kind, "origin": pos, "anchor": ref.note, "dt": 0, "dp": 0, "dd": 0}
            return
        if self.state.tool is Tool.DRAW:
            track = editor.draw_track()
            if track is None:
                return
            start = vp.snap(vp.tick_at(pos.x()), enabled=self._snap_on(event))
            note = Note(start, vp.pitch_at(pos.y()), vp.grid_ticks(), editor.draw_velocity)
            self._drag = {"kind": "draw", "origin": pos, "track": track, "note": note}
            editor.preview_note(note, track)
            self.update()
            return
        self._drag = {"kind": "band", "origin": pos, "point": pos, "add": shift}

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos, vp, drag = event.position(), self.state.viewport, self._drag
        if drag is None:
            index, near_edge = self._hit(pos)
            if self.state.tool is Tool.ERASE:
                self.setCursor(Qt.CursorShape.CrossCursor)
            elif index is not None:
                self.setCursor(Qt.CursorShape.SizeHorCursor if near_edge else Qt.CursorShape.SizeAllCursor)
            else:
                plain = self.state.tool is Tool.SELECT
                self.setCursor(Qt.CursorShape.ArrowCursor if plain else Qt.CursorShape.CrossCursor)
            return
        snap = self._snap_on(event)
        if drag["kind"] == "erase":
            self._erase_at(pos)
        elif drag["kind"] == "band":
            drag["point"] = pos
        elif drag["kind"] == "move":
            anchor = drag["anchor"]
            raw = anchor.start + (pos.x() - drag["origin"].x()) / vp.px_per_tick
            drag["dt"] = vp.snap_nearest(raw, snap) - anchor.start if snap else round(raw - anchor.start)
            drag["dp"] = vp.pitch_at(pos.y()) - vp.pitch_at(drag["origin"].y())
        elif drag["kind"] == "resize":
            anchor = drag["anchor"]
            end = anchor.start + anchor.duration + (pos.x() - drag["origin"].x()) / vp.px_per_tick
            end = vp.snap_nearest(end, snap) if snap else round(end)
            drag["dd"] = max(end, anchor.start + 1) - (anchor.start + anchor.duration)
        elif drag["kind"] == "draw":
            note = drag["note"]
            end = vp.tick_at(pos.x())
            end = vp.snap(end, enabled=snap) + vp.grid_ticks() if snap else round(end)
            drag["note"] = note._replace(duration=max(vp.grid_ticks() if snap else 1, end - note.start))
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        drag, self._drag = self._drag, None
        if drag is None or event.button() != Qt.MouseButton.LeftButton:
            return
        editor, vp = self.state.editor, self.state.viewport
        if drag["kind"] == "erase" and drag["refs"]:
            editor.delete_notes(drag["refs"])
        elif drag["kind"] == "band":
            rect = QRectF(drag["origin"], drag["point"]).normalized()
            refs = self.state.table.in_rect(vp.tick_at(rect.left()), vp.tick_at(rect.right()),
                                            vp.pitch_at(rect.bottom()), vp.pitch_at(rect.top()),
                                            self.state.editable_tracks())  # fmt: skip
            editor.select(refs, add=drag["add"])
        elif drag["kind"] == "move" and (drag["dt"] or drag["dp"]):
            editor.move_selection(drag["dt"], drag["dp"])
        elif drag["kind"] == "resize" and drag["dd"]:
            editor.resize_selection(drag["dd"])
        elif drag["kind"] == "draw":
            editor.add_note(drag["track"], drag["note"])
        self.update()

    def _erase_at(self, pos: QPointF) -> None:
        index, _ = self._hit(pos)
        if index is not None:
            ref = self.state.table.ref(index)
            if ref not in self._drag["refs"]:
                self._drag["refs"].add(ref)
                self.state.editor.select(self._drag["refs"])

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        vp, delta = self.state.viewport, event.angleDelta()
        steps = (delta.y() or delta.x()) / 120
        mods = event.modifiers()
        if mods & Qt.KeyboardModifier.ControlModifier:
            if mods & Qt.KeyboardModifier.ShiftModifier:
                vp.zoom_y(1.15**steps, event.position().y())
            else:
                vp.zoom_x(1.25**steps, event.position().x())
        elif mods & Qt.KeyboardModifier.ShiftModifier or delta.x():
            vp.left_tick = max(0.0, vp.left_tick - steps * 80 / vp.px_per_tick)
        else:
            highest = float(vp.span if vp.rows is None else vp.span - 1)  # kit rows: the top one at the edge
            vp.top_pitch = min(highest, max(vp.top_pitch + steps * 3, self.height() / vp.key_height))
        self.changed_view.emit()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        """Left/Right move the selection by one grid step (Up/Down, Delete are roll actions)."""
        editor, key = self.state.editor, event.key()
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Right) and editor.selection():
            step = self.state.viewport.grid_ticks()
            editor.move_selection(step if key == Qt.Key.Key_Right else -step, 0)
        elif key == Qt.Key.Key_Backspace:
            editor.delete_selection()
        else:
            super().keyPressEvent(event)


class Keyboard(QWidget):
    def __init__(self, state: RollState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setFixedWidth(KEYBOARD_PX)

    def label(self, pitch: int) -> str:
        """What the key says: its GM drum name with a drum track selected, else its pitch name
        (on Cs, and on every white key when the keys are tall enough)."""
        if self.state.drums_selected():
            return DRUM_KEY_NAMES.get(pitch, "")
        black = pitch % 12 in BLACK_KEYS
        return pitch_name(pitch) if pitch % 12 == 0 or (self.state.viewport.key_height >= 13 and not black) else ""

    def paintEvent(self, event) -> None:  # noqa: N802
        vp, painter = self.state.viewport, QPainter(self)
        drums = self.state.drums_selected()
        if self.minimumWidth() != (DRUM_KEYBOARD_PX if drums else KEYBOARD_PX):
            self.setFixedWidth(DRUM_KEYBOARD_PX if drums else KEYBOARD_PX)
        painter.fillRect(self.rect(), QColor("#f4f4f4"))
        if drums:
            self._paint_kit(painter)
            return
        for pitch in vp.pitches_between(0, self.height()):
            rect = QRectF(0, vp.y(pitch), self.width(), vp.key_height)
            black = pitch % 12 in BLACK_KEYS
            painter.fillRect(rect.adjusted(0, 0, -18 if black else 0, 0), QColor("#202020" if black else "#f4f4f4"))
            painter.setPen(QColor("#b0b0b0"))
            painter.drawLine(rect.bottomLeft(), rect.bottomRight())
            if self.label(pitch):
                painter.setPen(QColor("#303030"))
                align = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                painter.drawText(rect.adjusted(2, 0, -2, 0), align, self.label(pitch))
        painter.end()

    def _paint_kit(self, painter: QPainter) -> None:
        """One row per key, named by the General MIDI kit; keys outside the kit left blank."""
        vp = self.state.viewport
        font = painter.font()
        font.setPixelSize(max(6, min(12, int(vp.key_height) - 1)))
        painter.setFont(font)
        for pitch in vp.pitches_between(0, self.height()):
            rect = QRectF(0, vp.y(pitch), self.width(), vp.key_height)
            painter.fillRect(rect, QColor("#f4f4f4" if pitch in DRUM_KEY_NAMES else "#c8c8c8"))
            painter.setPen(QColor("#b0b0b0"))
            painter.drawLine(rect.bottomLeft(), rect.bottomRight())
            if vp.key_height >= 7 and self.label(pitch):
                painter.setPen(QColor("#303030"))
                painter.drawText(rect.adjusted(4, 0, -2, 0), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                                 self.label(pitch))  # fmt: skip
        painter.end()


class PianoRoll(QWidget):
    """The four parts and two scroll bars, kept in step."""

    def __init__(self, editor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = RollState(editor)
        self.canvas = RollCanvas(self.state)
        self.keyboard = Keyboard(self.state)
        self.ruler = Ruler(self.state)
        self.velocity = VelocityLane(self.state)
        self.hbar = QScrollBar(Qt.Orientation.Horizontal)
        self.vbar = QScrollBar(Qt.Orientation.Vertical)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.ruler, 0, 1)
        layout.addWidget(self.keyboard, 1, 0)
        layout.addWidget(self.canvas, 1, 1)
        layout.addWidget(self.vbar, 1, 2)
        layout.addWidget(self.velocity, 2, 1)
        layout.addWidget(self.hbar, 3, 1)
        self.canvas.changed_view.connect(self.refresh)
        self.hbar.valueChanged.connect(self._scrolled_x)
        self.vbar.valueChanged.connect(self._scrolled_y)
        self._syncing = False

    def refresh(self) -> None:
        """Repaint everything and bring the scroll bars in line with the viewport."""
        song, vp = self.state.song(), self.state.viewport
        self._syncing = True
        visible_ticks = self.canvas.width() / vp.px_per_tick
        end = max(song.end_tick + song.resolution * 8, int(vp.left_tick + visible_ticks))
        self.hbar.setRange(0, min(MAX_SCROLL, max(0, int(end - visible_ticks))))
        self.hbar.setPageStep(min(MAX_SCROLL, int(visible_ticks)))
        self.hbar.setSingleStep(min(MAX_SCROLL, max(1, int(visible_ticks / 20))))
        self.hbar.setValue(min(MAX_SCROLL, int(vp.left_tick)))
        rows = self.canvas.height() / vp.key_height
        self.vbar.setRange(0, max(0, int((vp.span - rows) * 10)))
        self.vbar.setPageStep(int(rows * 10))
        self.vbar.setValue(int((vp.span - vp.top_pitch) * 10))
        self._syncing = False
        for part in (self.canvas, self.keyboard, self.ruler, self.velocity):
            part.update()

    def _scrolled_x(self, value: int) -> None:
        if not self._syncing:
            self.state.viewport.left_tick = float(value)
            self.refresh()

    def _scrolled_y(self, value: int) -> None:
        if not self._syncing:
            self.state.viewport.top_pitch = self.state.viewport.span - value / 10
            self.refresh()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.refresh()

    def fit(self) -> None:
        """Show the whole song (or its first 32 bars) and centre the pitches it uses."""
        song, vp = self.state.song(), self.state.viewport
        width = max(self.canvas.width(), 400)
        span = max(song.end_tick, song.resolution * 16)
        vp.left_tick = 0.0
        vp.px_per_tick = min(0.5, max(width / min(span * 1.05, song.resolution * 4 * 32), 0.002))
        table = self.state.table
        if vp.rows is not None:  # the kit pieces played: from the top
            vp.top_pitch = float(vp.span - 1)
        elif len(table):
            low, high = int(table.data[:, 1].min()), int(table.data[:, 1].max())
            rows = max(self.canvas.height(), 300) / vp.key_height
            vp.top_pitch = min(128.0, (low + high) / 2 + rows / 2)
        self.refresh()

    def move_playhead(self, tick: int) -> None:
        """Move the playhead, repainting only the strips it leaves and enters; page along
        when it runs off the right edge."""
        vp, old = self.state.viewport, self.state.playhead
        self.state.playhead = tick
        width = self.canvas.width()
        if not 0 <= vp.x(tick) < width and old is not None and 0 <= vp.x(old) < width:  # it was on screen: follow
            vp.left_tick = max(0.0, tick - width * 0.05 / vp.px_per_tick)
            self.refresh()
            return
        for part in (self.canvas, self.ruler):
            for at in (old, tick):
                if at is not None:
                    part.update(int(vp.x(at)) - 3, 0, 6, part.height())

    def show_ticks(self, start: int, end: int) -> None:
        """Scroll (and zoom out if needed) so ticks [start, end) are in view."""
        vp, width = self.state.viewport, max(self.canvas.width(), 100)
        if end - start > width / vp.px_per_tick * 0.9:
            vp.px_per_tick = width * 0.9 / max(end - start, 1)
        if start < vp.left_tick or end > vp.tick_at(width):
            vp.left_tick = max(0.0, end - width * 0.95 / vp.px_per_tick)
        self.refresh()

    def zoom(self, factor: float) -> None:
        self.state.viewport.zoom_x(factor, self.canvas.width() / 2)
        self.refresh()
