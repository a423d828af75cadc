"""Generate (Stage 1): K boxes with descriptions, and K sound classes with confidences.

Reads: settings (sources, protocol, max_repairs), image, audio. Writes: generate (the calls, parsed
answers, repairs, how boxes were paired with sounds), sources (one record per sound: initial box,
description, audio class and confidence), error.

How is the protocol's (`gar_agent.protocols`): `gar` names the sounds first and asks for "box i for
sound i"; `reference` asks for boxes first, then the sounds, and pairs them by list order.
"""

from __future__ import annotations

from gar_agent import protocols
from gar_agent.context import GarContext
from gar_agent.nodes.runnable import Asks, model_node
from gar_agent.state import RunState, Settings


def initial_state(media, settings: Settings, model) -> RunState:
    """The state a run starts from; the model's coordinate frame is fixed here, once."""
    image = media.image_info.model_copy()
    frame = getattr(model, "model_frame", None)
    # The released code reads answers as original-image pixels; protocol gar speaks the model's frame.
    if callable(frame) and protocols.protocol(settings.protocol).MODEL_FRAME:
        image.model_width, image.model_height = frame(image.width, image.height)
    return RunState(settings=settings, image=image, audio=media.audio_info)


@model_node
def generate(state: RunState, ctx: GarContext) -> Asks:
    """Boxes and sound classes for the K sources, as the run's protocol asks for them."""
    inputs = {}
    if state.image is None or state.audio is None:  # started from a run configuration (LangGraph's server)
        start = initial_state(ctx.media, state.settings, ctx.model)
        inputs = {"image": start.image, "audio": start.audio}
        state = state.model_copy(update=inputs)
    return {**inputs, **(yield from protocols.protocol(state.settings.protocol).generate(state, ctx))}
