"""The local model at its limit (tiny checkpoint, CPU): media encoded once per clip, the shared prefix
prefilled once, concurrent calls batched; answers equal to the stock processor path."""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from PIL import Image

from gar_agent.calls import Request, ask
from gar_agent.cli.app import main
from gar_agent.media import load_media
from gar_agent.models.qwen_omni import ChatQwenOmni, to_conversation
from gar_agent.models.qwen_omni.media import audio_features
from gar_agent.models.qwen_omni.prefix import kv_bytes_per_token

pytestmark = pytest.mark.slow


def _png(seed: int, size=(333, 250)) -> bytes:
    rng = np.random.RandomState(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.randint(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _wav(seed: int, seconds: float = 2.0) -> bytes:
    rng = np.random.RandomState(seed)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.randn(int(seconds * 16000))).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def prompt(image: bytes | None, audio: bytes | None, text: str, system: str | None = "You locate sounds.") -> list:
    blocks: list = []
    if image is not None:
        blocks.append({"type": "image", "base64": _b64(image), "mime_type": "image/png"})
    if audio is not None:
        blocks.append({"type": "audio", "base64": _b64(audio), "mime_type": "audio/wav"})
    blocks.append({"type": "text", "text": text})
    return ([SystemMessage(system)] if system else []) + [HumanMessage(blocks)]


def model(tiny_dir, **kw) -> ChatQwenOmni:
    return ChatQwenOmni(model=str(tiny_dir), device="cpu", dtype="float32", **{"max_tokens": 16, **kw})


def stock_greedy(chat: ChatQwenOmni, messages: list, max_new: int = 16) -> tuple[list[int], torch.Tensor]:
    """The released adapter's path: the processor on decoded media (audio padded to 300 s), one generate."""
    loaded = chat._loaded()
    inputs = loaded.processor.apply_chat_template(
        to_conversation(messages), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        logits = loaded.model(**inputs).logits[0, -1]
        out = loaded.model.generate(
            **inputs, max_new_tokens=max_new, do_sample=False, temperature=None, top_p=None, top_k=None
        )
    return out[0, inputs["input_ids"].shape[1] :].tolist(), logits


def stock_text(chat: ChatQwenOmni, ids: list[int]) -> str:
    """The answer text of generated ids, cut at the end token as the adapter cuts it."""
    tok = chat.processor.tokenizer
    ends = {tok.eos_token_id, tok.pad_token_id, chat._loaded().model.generation_config.eos_token_id}
    cut = next((i for i, t in enumerate(ids) if t in ends), len(ids))
    return tok.decode(ids[:cut], skip_special_tokens=True)


class PromptTokens:
    """Counts the prompt positions the language model runs: every forward outside generate (prefills),
    and generate's first step; generate's later steps decode answers and are not counted."""

    def __init__(self, net, monkeypatch):
        self.positions = 0
        self.first_step = False
        real = net.generate

        def generate(**kwargs):
            self.first_step = True
            self.inside = True
            try:
                return real(**kwargs)
            finally:
                self.inside = False

        self.inside = False
        monkeypatch.setattr(net, "generate", generate)
        self.handle = net.model.language_model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        rows, length = kwargs["inputs_embeds"].shape[:2]
        if not self.inside or self.first_step:
            self.positions += rows * length
            self.first_step = False

    def close(self):
        self.handle.remove()


# ---- encode once per clip -----------------------------------------------------------------------------


def test_audio_features_on_the_clips_length_equal_the_300s_padded_ones(tiny_dir):
    fe = model(tiny_dir).processor.feature_extractor
    for seconds in (0.37, 2.0, 3.01):
        wave = (0.1 * np.random.RandomState(1).randn(int(seconds * 16000))).astype(np.float32)
        stock = fe(wave, sampling_rate=16000, padding="max_length", return_attention_mask=True, return_tensors="pt")
        frames = int(stock["attention_mask"][0].sum())
        short = audio_features(fe, wave)
        assert stock["input_features"].shape[-1] == 30000 and short.shape[-1] == frames
        assert torch.equal(short, stock["input_features"][0, :, :frames])


def test_cached_media_gives_the_stock_processors_logits_and_greedy_answer(tiny_dir):
    chat = model(tiny_dir)
    for msgs in (
        prompt(_png(0), _wav(0), "Where is the sound?"),
        prompt(None, _wav(1, 3.0), "What makes this sound?", system=None),
        prompt(_png(2, (640, 360)), _wav(2, 0.5), "Box it."),
    ):
        ids, logits = stock_greedy(chat, msgs)
        for flag in (False, True):
            out = model(tiny_dir, prefix_cache=flag).invoke(msgs)
            assert out.content == stock_text(chat, ids)
        # the logits of the first answer token are the stock path's, exactly
        from gar_agent.models.qwen_omni.prompt import build_prompt, stock_inputs

        loaded = chat._loaded()
        chat._engine(loaded)
        built = build_prompt(loaded.processor, chat.encoded_media, to_conversation(msgs, refs=True))
        with torch.inference_mode():
            mine = loaded.model(**stock_inputs([built], loaded.processor.tokenizer.pad_token_id)).logits[0, -1]
        assert torch.equal(mine, logits)


def test_a_processor_we_do_not_reproduce_falls_back_to_the_processor_path(tiny_dir, monkeypatch):
    from gar_agent.models.qwen_omni import model as qwen_omni_model

    chat = model(tiny_dir, max_tokens=4)
    msgs = prompt(_png(60), _wav(60), "Where?")
    loaded = chat._loaded()
    monkeypatch.setattr(loaded, "media_path_ok", None)  # checked again here, restored afterwards
    monkeypatch.setattr(qwen_omni_model, "processor_mismatch", lambda *a: "token ids differ")
    with pytest.warns(UserWarning, match="media cache disabled .token ids differ"):
        out = chat.invoke(msgs)
    assert loaded.media_path_ok is False
    again = chat.invoke(msgs)  # no prefix cache on the processor path
    assert again.usage_metadata["input_token_details"]["cache_read"] == 0 and again.content == out.content
    ids, _ = stock_greedy(chat, msgs, 4)
    assert out.content == stock_text(chat, ids)


def test_media_cache_hits_misses_and_content_keys(tiny_dir, tmp_path):
    chat = model(tiny_dir, max_tokens=2)
    img, wav = _png(3), _wav(3)
    first = chat.invoke(prompt(img, wav, "one"))
    assert first.response_metadata["media_cached"] == 0
    assert chat._loaded().media_path_ok is True  # checked against the processor on the first prompt
    again = chat.invoke(prompt(img, wav, "two, another question"))
    assert again.response_metadata["media_cached"] == 2  # image and audio both from the cache
    other = chat.invoke(prompt(_png(4), wav, "three"))
    assert other.response_metadata["media_cached"] == 1  # the audio only
    stats = chat.encoded_media.entries
    assert (stats.hits, stats.misses) == (3, 3)

    # an image edited in place at the same path is new content: a miss, and the model sees the edit
    path = tmp_path / "frame.png"
    path.write_bytes(_png(5))
    by_path = [HumanMessage([{"type": "image", "path": str(path)}, {"type": "text", "text": "x"}])]
    assert chat.invoke(by_path).response_metadata["media_cached"] == 0
    assert chat.invoke(by_path).response_metadata["media_cached"] == 1
    path.write_bytes(_png(6))
    edited = chat.invoke(by_path)
    assert edited.response_metadata["media_cached"] == 0
    ids, _ = stock_greedy(chat, by_path, 2)
    assert edited.content == stock_text(chat, ids)


# ---- prefill the shared prefix once ---------------------------------------------------------------------


def test_greedy_answers_equal_with_and_without_the_prefix_cache(tiny_dir):
    img, wav = _png(7), _wav(7)
    conversations = [
        prompt(img, wav, "Where is the sound?"),
        prompt(img, wav, "Give the box of the object that makes this sound, as JSON please."),
        prompt(None, wav, "Name the sound."),
        prompt(img, wav, "Where is the sound?", system=None),
        # a repair turn: the question, the unusable answer, the repair text
        [*prompt(img, wav, "Where is the sound?"), AIMessage("no idea"), HumanMessage("Answer with JSON only.")],
    ]
    plain, cached = model(tiny_dir, prefix_cache=False), model(tiny_dir)
    for msgs in conversations:
        want = plain.invoke(msgs)
        got = cached.invoke(msgs)
        assert (
            got.content == want.content and got.usage_metadata["output_tokens"] == want.usage_metadata["output_tokens"]
        )
        assert want.usage_metadata["input_token_details"]["cache_read"] == 0
    # the second question of the clip read the image+audio prefix from the cache
    second = cached.invoke(conversations[1])  # asked again: the whole prompt's KV is cached
    assert second.content == plain.invoke(conversations[1]).content
    assert second.usage_metadata["input_token_details"]["cache_read"] == second.usage_metadata["input_tokens"] - 1
    third = cached.invoke(prompt(img, wav, "A third question about the same clip."))
    assert 0 < third.usage_metadata["input_token_details"]["cache_read"] < third.usage_metadata["input_tokens"] - 1
    assert second.usage_metadata["input_tokens"] == plain.invoke(conversations[1]).usage_metadata["input_tokens"]


def test_n_samples_come_from_one_prefill(tiny_dir, monkeypatch):
    img, wav = _png(8), _wav(8)
    msgs = prompt(img, wav, "Vote: is the box right?")
    for flag in (True, False):
        chat = model(tiny_dir, prefix_cache=flag, max_tokens=4)
        net = chat._loaded().model
        counter = PromptTokens(net, monkeypatch)
        try:
            res = chat.generate([msgs], n=5, temperature=0.8, top_p=0.9, seed=0).generations[0]
        finally:
            counter.close()
            monkeypatch.undo()
        t = res[0].message.usage_metadata["input_tokens"]
        meta = res[0].message.response_metadata
        # with the cache: the prompt once, then only its last token for each of the 5 samples
        expected = (t - 1 + 5) if flag else 5 * t
        assert meta["prefill_tokens"] == expected == counter.positions
        assert len(res) == 5 and len({g.message.response_metadata["call_id"] for g in res}) == 1
    # the same prompt again (one call per vote) runs only its last token, once per sample
    chat = model(tiny_dir, max_tokens=4)
    first = chat.generate([msgs], n=5, temperature=0.8, top_p=0.9, seed=0).generations[0][0].message
    repeat = chat.generate([msgs], n=5, temperature=0.8, top_p=0.9, seed=0).generations[0][0].message
    t = first.usage_metadata["input_tokens"]
    assert repeat.response_metadata["prefill_tokens"] == 5
    assert repeat.usage_metadata["input_token_details"]["cache_read"] == t - 1 and repeat.content == first.content
    # a second pass over the same clip prefills only its own text
    again = chat.generate([prompt(img, wav, "Vote again, please.")], n=5, temperature=0.8, top_p=0.9, seed=1)
    m = again.generations[0][0].message
    cached = m.usage_metadata["input_token_details"]["cache_read"]
    assert cached > 0 and m.response_metadata["prefill_tokens"] == m.usage_metadata["input_tokens"] - 1 - cached + 5


def test_seeded_samples_repeat_from_the_cache(tiny_dir):
    chat = model(tiny_dir, max_tokens=8)
    msgs = prompt(_png(9), _wav(9), "Vote.")
    a = [g.text for g in chat.generate([msgs], n=3, temperature=0.8, top_p=0.9, seed=4).generations[0]]
    b = [g.text for g in chat.generate([msgs], n=3, temperature=0.8, top_p=0.9, seed=4).generations[0]]
    assert a == b


def test_memory_is_bounded_by_the_lru(tiny_dir):
    chat = model(tiny_dir, cache_clips=1, max_tokens=1)
    clips = [(_png(10 + i), _wav(10 + i)) for i in range(3)]
    for img, wav in clips:
        chat.invoke(prompt(img, wav, "a"))
        chat.invoke(prompt(None, wav, "b"))
    assert len(chat.prefix_kv_cache.entries) == 2 and len(chat.encoded_media.entries) == 2
    size = chat.prefix_kv_cache.nbytes
    cfg = chat._loaded().model.config.text_config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_token = kv_bytes_per_token(cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim, 4)
    kept = [*chat.prefix_kv_cache.entries.values(), *chat.prefix_kv_cache.prompts.values()]
    assert len(chat.prefix_kv_cache.prompts) == 2 and size == per_token * sum(e.length for e in kept)
    # the first clip was evicted: its media and prefix are computed again
    first = chat.invoke(prompt(*clips[0], "a"))
    assert (
        first.response_metadata["media_cached"] == 0 and first.usage_metadata["input_token_details"]["cache_read"] == 0
    )
    # 7B in bf16: 28 layers, 4 KV heads of 128 -> 56 KiB a token
    assert kv_bytes_per_token(28, 4, 128) == 56 * 1024


# ---- batch clips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_concurrent_calls_run_as_one_batch_with_unbatched_answers(tiny_dir, prefix_cache):
    clips = [prompt(_png(20 + i, (280 + 28 * i, 224)), _wav(20 + i, 1.0 + 0.5 * i), f"clip {i}?") for i in range(4)]
    single = model(tiny_dir, prefix_cache=prefix_cache)
    want = [single.invoke(c).content for c in clips]
    batched = model(tiny_dir, prefix_cache=prefix_cache, batch_size=4, batch_wait_s=5.0)
    got: list = [None] * 4
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        got[i] = batched.invoke(clips[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [g.content for g in got] == want
    assert batched.batcher.batches == [4]  # four clips, one generate
    assert all(g.response_metadata["batch_prompts"] == 4 for g in got)


def test_calls_with_other_settings_are_not_batched_together(tiny_dir):
    chat = model(tiny_dir, batch_size=4, batch_wait_s=0.3, max_tokens=2)
    msgs = prompt(_png(30), _wav(30), "x")
    out: dict = {}
    t1 = threading.Thread(target=lambda: out.setdefault("greedy", chat.invoke(msgs)))
    t2 = threading.Thread(target=lambda: out.setdefault("votes", chat.generate([msgs], n=2, temperature=0.5)))
    t1.start(), t2.start()
    t1.join(), t2.join()
    assert sorted(chat.batcher.batches) == [1, 1] and len(out["votes"].generations[0]) == 2


# ---- accounting ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("clip")
    (d / "frame.png").write_bytes(_png(40))
    (d / "clip.wav").write_bytes(_wav(40))
    return d / "frame.png", d / "clip.wav"


def test_model_calls_record_cached_input_tokens(tiny_dir, clip_files):
    media = load_media(*clip_files)
    chat = model(tiny_dir, max_tokens=2)
    first = ask(chat, media, Request("generate", None, "t.txt", "Where?"))
    second = ask(chat, media, Request("analyze", 0, "t.txt", "Vote.", temperature=0.5, top_p=0.9, n=3))
    assert first.usage.cached_input_tokens == 0 and first.usage.input_tokens > 0
    assert 0 < second.usage.cached_input_tokens < second.usage.input_tokens
    assert (first.usage + second.usage).cached_input_tokens == second.usage.cached_input_tokens
    assert "cached_input_tokens" in second.model_dump()["usage"]


def test_gar_run_reports_cached_tokens_and_no_prefix_cache_turns_it_off(tiny_dir, clip_files, tmp_path, capsys):
    image, audio = clip_files
    common = ["run", str(image), str(audio), "--backend", "qwen-omni", "--model", str(tiny_dir), "--json"]
    common += ["--trace-dir", str(tmp_path / "traces"), "--checkpoints", "memory", "--n-votes", "2"]
    results = {}
    for flag in ("--prefix-cache", "--no-prefix-cache"):
        main([*common, "--out", str(tmp_path / flag), flag])
        results[flag] = json.loads(capsys.readouterr().out)
    usage = results["--prefix-cache"]["usage"]
    assert usage["model_calls"] >= 3 and 0 < usage["cached_input_tokens"] < usage["input_tokens"]
    assert results["--no-prefix-cache"]["usage"]["cached_input_tokens"] == 0
    # the trace records it per call
    trace = next((tmp_path / "traces").glob("*/trace.json"))
    calls = json.loads(trace.read_text())["calls"]
    assert calls and all("cached_input_tokens" in c["usage"] for c in calls)


def test_local_flags_on_another_backend_are_one_line_errors(clip_files, tmp_path, capsys):
    script = tmp_path / "s.json"
    script.write_text("{}")
    code = main(["run", *map(str, clip_files), "--backend", f"scripted:{script}", "--no-prefix-cache"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gar: error: --no-prefix-cache is for the local --backend qwen-omni")
    assert "Traceback" not in err


def test_gar_eval_batches_samples_with_the_unbatched_answers(tiny_dir, tmp_path, capsys, monkeypatch):
    from gar_agent.models.qwen_omni import batch as qwen_omni_batch

    sizes: list[int] = []
    real_init, real_run = qwen_omni_batch.DynamicBatcher.__init__, qwen_omni_batch.DynamicBatcher._run

    def patient_init(self, execute, max_prompts, wait_s=0.02):
        real_init(self, execute, max_prompts, 2.0)  # a slow CI machine must not split the batch

    def recording_run(self, batch):
        sizes.append(sum(len(r.prompts) for r in batch))
        real_run(self, batch)

    monkeypatch.setattr(qwen_omni_batch.DynamicBatcher, "__init__", patient_init)
    monkeypatch.setattr(qwen_omni_batch.DynamicBatcher, "_run", recording_run)
    frames, audio = tmp_path / "frames", tmp_path / "audio"
    frames.mkdir(), audio.mkdir()
    records = []
    for i in range(3):
        Image.open(io.BytesIO(_png(50 + i))).convert("RGB").save(frames / f"s{i}.jpg", quality=95)
        (audio / f"s{i}.wav").write_bytes(_wav(50 + i, 1.0))
        records.append({"file": f"s{i}", "class": "a", "bbox": [[0.1, 0.1, 0.5, 0.5]]})
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(records))
    args = ["eval", "--dataset", "vggss-single", "--frames", str(frames), "--audio", str(audio), "--gt", str(gt)]
    args += ["--backend", "qwen-omni", "--model", str(tiny_dir), "--no-vis"]
    answers = {}
    for batch in (1, 3):
        main([*args, "--out", str(tmp_path / f"b{batch}"), "--batch-size", str(batch)])
        capsys.readouterr()
        traces = sorted((tmp_path / f"b{batch}" / "traces").glob("*/trace.json"))
        assert len(traces) == 3
        answers[batch] = [[(c["stage"], c["answers"]) for c in json.loads(t.read_text())["calls"]] for t in traces]
    # the tiny model's noise ends each run at Generate: its greedy calls are the same, batched or not
    assert answers[3] == answers[1] and all(len(calls) >= 2 for calls in answers[1])
    assert sizes and max(sizes) == 3  # the three samples' calls of a stage ran as one generate
