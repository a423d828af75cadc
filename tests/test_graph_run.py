"""The paper's graph end to end with scripted models: K = 1, 2, 3 and every failure rule."""

import json

import pytest
from helpers import audio_answer, boxes_answer, scripted, vote
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from gar_agent.runner import run_clip
from gar_agent.state import Settings

W, H = 330, 250  # the example image; max_delta = 20


def test_single_source_skips_refine_when_confident(media):
    model = scripted(
        audio=[audio_answer(["dog barking"], [0.9])],
        generate=[boxes_answer([[10, 10, 100, 100]])],
        analyze=[vote(0.8, True)] * 5,
        refine=["{}"],
    )
    out = run_clip(media, Settings(), model)
    [src] = out.result.sources
    assert out.result.error is None
    assert src.box == src.initial_box == [10, 10, 100, 100]
    assert src.refined is False and src.analysis.n_votes == 5
    assert [s.node for s in out.steps] == ["generate", "analyze", "gate", "localize"]
    # 2 Generate calls + 1 Analyze call carrying 5 samples
    assert out.result.usage.model_calls == 3


@pytest.mark.parametrize("k", [1, 2, 3])
def test_k_sources_each_analyzed_gated_and_refined_as_decided(media, k):
    boxes = [[10 + 100 * i, 20, 80 + 100 * i, 120] for i in range(k)]
    classes = [f"sound {i}" for i in range(k)]
    # source i is confident only when i is even -> odd sources are refined
    confs = [0.9 if i % 2 == 0 else 0.3 for i in range(k)]
    model = scripted(
        audio=[audio_answer(classes, confs)],
        generate=[boxes_answer(boxes)],
        analyze={str(i): [vote(0.9, True)] * 5 for i in range(k)},
        refine={
            str(i): [json.dumps({"bbox": [b[0] + 5, b[1], b[2] + 5, b[3]], "changed": True})]
            for i, b in enumerate(boxes)
        },
    )
    out = run_clip(media, Settings(sources=k, n_votes=5, votes_per_call=2), model)
    res = out.result
    assert res.error is None and len(res.sources) == k
    for i, src in enumerate(res.sources):
        assert src.audio_class == classes[i] and src.initial_box == boxes[i]
        assert src.analysis.n_votes == 5
        refined = i % 2 == 1
        assert src.refined is refined
        expected = [boxes[i][0] + 5, boxes[i][1], boxes[i][2] + 5, boxes[i][3]] if refined else boxes[i]
        assert src.box == expected
    # votes_per_call=2 -> 3 Analyze passes (2 + 2 + 1) per source
    analyze_steps = [s for s in out.steps if s.node == "analyze"]
    assert len(analyze_steps) == 3 * k
    assert out.state.calls_of(0)[-1].n == 1


def test_unusable_generate_gets_one_repair(media):
    model = scripted(
        audio=[audio_answer(["violin"], [0.9])],
        generate=["I see a violin on the left.", boxes_answer([[5, 5, 50, 50]])],
        analyze=[vote()] * 5,
    )
    out = run_clip(media, Settings(), model)
    gen = out.state.generate
    assert [c.template for c in out.state.calls_of(None)] == ["audio_single.txt", "generate_single.txt", "repair.txt"]
    assert gen.boxes[0].error == "no JSON object found in the answer" and gen.boxes[1].error is None
    assert out.result.sources[0].initial_box == [5, 5, 50, 50]


def test_generate_still_unusable_ends_the_run_with_a_clear_error(media):
    model = scripted(audio=[audio_answer(["violin"], [0.9])], generate=["no idea", '{"bbox": [1, 2]}'])
    out = run_clip(media, Settings(), model)
    assert out.result.sources == []
    assert out.result.error == "generate: the box answer was unusable after 2 tries: 'bbox' is not a list of 4 numbers"
    assert [s.node for s in out.steps] == ["generate"]


def test_failed_audio_answer_is_unknown_with_zero_confidence(media):
    model = scripted(
        audio=["a dog, probably"],
        generate=[boxes_answer([[5, 5, 50, 50]])],
        analyze=[vote()] * 5,
        refine=['{"changed": false}'],
    )
    out = run_clip(media, Settings(), model)
    src = out.result.sources[0]
    assert (src.audio_class, src.audio_confidence) == ("unknown", 0.0)
    assert src.refined is True  # confidence 0 < tau_audio


def test_failed_votes_are_dropped_and_failed_refine_keeps_the_box(media):
    model = scripted(
        audio=[audio_answer(["violin"], [0.9])],
        generate=[boxes_answer([[40, 40, 120, 120]])],
        analyze=[vote(0.9, True), "not json", vote(0.1, False), "{}", vote(0.2, False)],
        refine=["I would move it left a bit."],
    )
    out = run_clip(media, Settings(), model)
    src = out.state.sources[0]
    assert src.analysis.n_parsed == 3 and src.analysis.av_consistency == pytest.approx(0.4)
    assert [v.error for v in src.votes if v.error] == [
        "no JSON object found in the answer",
        "field 'av_consistency' is missing",
    ]
    assert src.refinement.applied == "parse_error" and src.box == [40, 40, 120, 120]


def test_refine_box_outside_image_is_clipped_and_clamped(media):
    model = scripted(
        audio=[audio_answer(["violin"], [0.1])],
        generate=[boxes_answer([[300, 200, 2000, 900]])],  # outside the 330x250 image
        analyze=[vote()] * 5,
        refine=[json.dumps({"bbox": [100, 100, 500, 500], "changed": True})],
    )
    out = run_clip(media, Settings(), model)
    src = out.state.sources[0]
    assert src.initial_box == [300, 200, W - 1, H - 1]
    assert src.box == [280, 180, W - 1, H - 1] and src.refinement.clamped


class NoSamples(BaseChatModel):
    """A model that ignores `n` and returns one answer per call (most chat models)."""

    calls: int = 0

    @property
    def _llm_type(self):
        return "no-samples"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls += 1
        stage = run_manager.metadata["gar_stage"]
        text = {
            "audio": audio_answer(["violin"], [0.95]),
            "generate": boxes_answer([[5, 5, 60, 60]]),
            "analyze": vote(0.9, True),
        }[stage]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def test_any_chat_model_without_multi_sample_support_gets_n_calls(media):
    model = NoSamples()
    out = run_clip(media, Settings(n_votes=4), model)
    assert out.result.error is None and out.state.sources[0].analysis.n_parsed == 4
    assert model.calls == 2 + 4 and out.result.usage.model_calls == 6


class Raises(NoSamples):
    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if run_manager.metadata["gar_stage"] == "analyze":
            raise ConnectionError("server went away")
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_a_model_that_raises_ends_the_run_with_its_error(media):
    out = run_clip(media, Settings(), Raises())
    assert out.result.error == "analyze (source 0): the model failed: ConnectionError: server went away"
    assert out.result.sources[0].box == [5, 5, 60, 60]  # what was computed is kept


class Resized(NoSamples):
    """Answers in a 28-multiple frame, like Qwen's processor (330x250 -> 336x252)."""

    prompt: str = ""

    def model_frame(self, width, height):
        return 336, 252

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if run_manager.metadata["gar_stage"] == "generate":
            self.prompt = messages[-1].content[-1]["text"]
            return ChatResult(
                generations=[ChatGeneration(message=AIMessage(content=boxes_answer([[168, 126, 336, 252]])))]
            )
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_model_frame_coordinates_map_to_original_pixels(media):
    model = Resized()
    out = run_clip(media, Settings(), model)
    assert "336x252" in model.prompt  # the prompt speaks the model's frame
    assert out.result.sources[0].initial_box == [165, 125, W - 1, H - 1]
    assert (out.state.image.model_width, out.state.image.model_height) == (336, 252)


def test_a_checkpoint_edited_with_json_state_reruns_with_the_original_answers(media):
    """What a fork over LangGraph's server does, in process: the update carries the channels' JSON
    form (dicts), and the re-run from that checkpoint, on the same thread with the same model object,
    is served the scripted answers the original run got there."""
    from gar_agent.checkpoints import memory_saver
    from gar_agent.context import GarContext
    from gar_agent.nodes.generate import initial_state
    from gar_agent.prompts import PromptSet
    from gar_agent.runner import stream_run
    from gar_agent.topology import load_topology

    model = scripted(
        audio=[audio_answer(["violin", "drum"], [0.9, 0.9])],
        generate=[boxes_answer([[10, 10, 100, 100], [150, 20, 250, 120]])],
        analyze={"0": [vote(0.9), vote(0.7), vote(0.2)], "1": [vote(0.6), vote(0.1), vote(0.3)]},
        refine=["{}"],
    )
    graph = load_topology("gar").compile(checkpointer=memory_saver())
    config = {"configurable": {"thread_id": "t"}}
    context = GarContext(model=model, media=media, prompts=PromptSet())
    start = initial_state(media, Settings(sources=2, n_votes=3, votes_per_call=1), model)
    original = stream_run(graph, start, config, context)
    after_generate = next(h for h in graph.get_state_history(config) if "localize" in h.next)
    edited = [s.model_dump(mode="json") for s in after_generate.values["sources"]]
    edited[0]["box"] = edited[0]["initial_box"] = [12, 12, 98, 98]
    settings = {**after_generate.values["settings"].model_dump(mode="json"), "tau_av": 0.7}
    fork = graph.update_state(after_generate.config, {"sources": edited, "settings": settings}, as_node="generate")
    rerun = stream_run(graph, None, fork, context)
    assert rerun.state.error is None
    assert rerun.state.sources[0].initial_box == [12, 12, 98, 98]
    assert [s.gate.tau_av for s in rerun.state.sources] == [0.7, 0.7]
    assert [[v.raw for v in s.votes] for s in rerun.state.sources] == [
        [v.raw for v in s.votes] for s in original.state.sources
    ]


def test_scripted_answers_start_over_for_every_run(media):
    model = scripted(
        audio=['{"audio_class": "violin", "audio_confidence_score": 0.9}', '{"audio_class": "drum"}'],
        generate=['{"bbox": [10, 20, 110, 120], "description": "a violin"}'],
        analyze=[vote()],
        refine=['{"changed": false}'],
    )
    first = run_clip(media, Settings(n_votes=1), model).state
    second = run_clip(media, Settings(n_votes=1), model).state
    # each run (an evaluation sample) consumes the lists from the start: --ids/--limit/resume agree
    assert first.sources[0].audio_class == second.sources[0].audio_class == "violin"
