"""Limits on the inputs, named apart from the decoders that apply them (gar_agent.media), so the
CLI's help can state them without importing OpenCV and NumPy."""

DEFAULT_MAX_PIXELS = 50_000_000
"""Most pixels a frame may have (read from its header before decoding); --max-pixels or the env var change it."""
MAX_PIXELS_ENV = "GAR_MAX_PIXELS"
"""The environment variable that sets the pixel limit for every command."""
