"""MeloFormer core: the Song music model, MIDI I/O, the HID encoding, the model and generation."""

__version__ = "0.1.0"
