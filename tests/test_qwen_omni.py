"""ChatQwenOmni on a tiny random Qwen2.5-Omni checkpoint: the real loading and generation path."""

from __future__ import annotations

import base64
import importlib.util
import json
import threading

import numpy as np
import pytest
import soundfile as sf
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from PIL import Image
from typer.testing import CliRunner

from gar_agent.cli.model_cmd import model_app
from gar_agent.errors import BackendError
from gar_agent.models import qwen_omni
from gar_agent.models.qwen_omni import ChatQwenOmni, ContentBlockError, ModelLoadError, to_conversation
from gar_agent.models.tiny import build_tiny_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("media")
    rng = np.random.RandomState(0)
    img = Image.fromarray(rng.randint(0, 255, (250, 333, 3), dtype=np.uint8))
    img.save(d / "frame.png")
    wav = (0.1 * rng.randn(2 * 16000)).astype(np.float32)
    sf.write(d / "clip.wav", wav, 16000)
    stereo_8k = (0.1 * rng.randn(8000, 2)).astype(np.float32)  # 1 s, stereo, 8 kHz
    sf.write(d / "stereo8k.wav", stereo_8k, 8000)
    return {
        "img_path": d / "frame.png",
        "img_b64": base64.b64encode((d / "frame.png").read_bytes()).decode(),
        "wav_path": d / "clip.wav",
        "wav_b64": base64.b64encode((d / "clip.wav").read_bytes()).decode(),
        "stereo_path": d / "stereo8k.wav",
    }


@pytest.fixture(scope="session")
def chat(tiny_dir) -> ChatQwenOmni:
    return ChatQwenOmni(model=str(tiny_dir), device="cpu", max_tokens=12)


def av_prompt(media, text="Where is the sound?", system=True) -> list:
    msgs = [SystemMessage("You locate sounding objects.")] if system else []
    msgs.append(
        HumanMessage(
            [
                {"type": "image", "base64": media["img_b64"], "mime_type": "image/png"},
                {"type": "audio", "base64": media["wav_b64"], "mime_type": "audio/wav"},
                {"type": "text", "text": text},
            ]
        )
    )
    return msgs


class CountingGenerate:
    """Wraps a model's generate to count calls and record kwargs."""

    def __init__(self, net):
        self.inner, self.calls = net.generate, []

    def __call__(self, **kwargs):
        call = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
        call["input_rows"] = kwargs["input_ids"].shape[0]
        call["cache_len"] = kwargs["cache"].get_seq_length() if kwargs.get("cache") is not None else 0
        self.calls.append(call)
        return self.inner(**kwargs)


# ---- content blocks ---------------------------------------------------------------------------------


def test_content_blocks_all_forms(media):
    img_data_uri = f"data:image/png;base64,{media['img_b64']}"
    wav_data_uri = f"data:audio/wav;base64,{media['wav_b64']}"
    msgs = [
        SystemMessage("system text"),
        HumanMessage(
            [
                "plain string",
                {"type": "text", "text": "text block"},
                {"type": "image", "base64": media["img_b64"], "mime_type": "image/png"},
                {"type": "image", "url": img_data_uri},
                {"type": "image", "url": media["img_path"].as_uri()},
                {"type": "image", "url": str(media["img_path"])},
                {"type": "image_url", "image_url": {"url": img_data_uri}},
                {"type": "audio", "base64": media["wav_b64"], "mime_type": "audio/wav"},
                {"type": "audio", "url": wav_data_uri},
                {"type": "audio", "path": str(media["wav_path"])},
                {"type": "audio", "url": media["wav_path"].as_uri()},
                {"type": "input_audio", "input_audio": {"data": media["wav_b64"], "format": "wav"}},
                {"type": "audio", "path": str(media["stereo_path"])},
            ]
        ),
        AIMessage("previous answer"),
    ]
    conv = to_conversation(msgs)
    assert [m["role"] for m in conv] == ["system", "user", "assistant"]
    assert conv[0]["content"] == [{"type": "text", "text": "system text"}]
    items = conv[1]["content"]
    assert [i["type"] for i in items] == ["text"] * 2 + ["image"] * 5 + ["audio"] * 6
    ref = np.asarray(Image.open(media["img_path"]).convert("RGB"))
    for it in items[2:7]:
        assert it["image"].mode == "RGB" and it["image"].size == (333, 250)
        assert np.array_equal(np.asarray(it["image"]), ref)
    wav_ref, _ = sf.read(media["wav_path"], dtype="float32")
    for it in items[7:12]:
        assert it["audio"].dtype == np.float32 and it["audio"].ndim == 1
        np.testing.assert_allclose(it["audio"], wav_ref, atol=1e-4)
    resampled = items[12]["audio"]
    assert resampled.ndim == 1 and resampled.dtype == np.float32 and abs(len(resampled) - 16000) <= 2


@pytest.mark.parametrize(
    "block",
    [
        {"type": "video", "url": "file:///x.mp4"},
        {"type": "file", "base64": "AAAA", "mime_type": "application/pdf"},
        {"type": "image"},
        {"type": "image", "url": "https://example.com/x.png"},
        {"type": "audio", "path": "/definitely/not/here.wav"},
    ],
)
def test_unsupported_blocks_raise(block):
    with pytest.raises(ContentBlockError):
        to_conversation([HumanMessage([block])])


def test_tool_message_rejected():
    with pytest.raises(ContentBlockError, match="unsupported message type"):
        to_conversation([ToolMessage("x", tool_call_id="1")])


# ---- loading ----------------------------------------------------------------------------------------


def test_tiny_checkpoint_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    a = load_file(build_tiny_checkpoint(tmp_path / "a", seed=1) / "model.safetensors")
    b = load_file(build_tiny_checkpoint(tmp_path / "b", seed=1) / "model.safetensors")
    c = load_file(build_tiny_checkpoint(tmp_path / "c", seed=2) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_construct_and_model_frame_load_no_weights(tiny_dir, media):
    m = ChatQwenOmni(model=str(tiny_dir), dtype="float16", device="cpu")
    key = m._resolved_settings()
    assert key not in qwen_omni._LOADED
    w, h = m.model_frame(333, 250)
    assert key not in qwen_omni._LOADED
    # the processor's own resize fixes the frame: grid (t, h, w) in patches of 14 px
    inputs = m.processor.apply_chat_template(
        to_conversation([HumanMessage([{"type": "image", "path": str(media["img_path"])}, "x"])]),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    _, gh, gw = inputs["image_grid_thw"][0].tolist()
    patch = m.processor.image_processor.patch_size
    assert (w, h) == (gw * patch, gh * patch)
    assert w % 28 == 0 and h % 28 == 0 and (w, h) != (333, 250)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_dtype_and_device(tiny_dir, media, dtype):
    m = ChatQwenOmni(model=str(tiny_dir), dtype=dtype, device="cpu", max_tokens=4)
    out = m.invoke(av_prompt(media))
    net = m._loaded().model
    assert net.dtype == getattr(torch, dtype) and net.device.type == "cpu"
    assert out.usage_metadata["output_tokens"] <= 4


def test_missing_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        ChatQwenOmni(model=str(tmp_path / "nope")).invoke("hi")
    with pytest.raises(ModelLoadError, match="does not exist"):
        ChatQwenOmni(model=str(tmp_path / "nope")).model_frame(100, 100)


def test_other_architecture(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"'bert'.*qwen2_5_omni"):
        ChatQwenOmni(model=str(tmp_path)).invoke("hi")


def test_quantization_needs_bitsandbytes(tiny_dir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )
    with pytest.raises(ModelLoadError, match="bitsandbytes"):
        ChatQwenOmni(model=str(tiny_dir), quantization="4bit", device="cpu").invoke("hi")


def test_composite_checkpoint_loads_into_thinker(tiny_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import Qwen2_5OmniConfig

    comp = tmp_path / "composite"
    shutil.copytree(tiny_dir, comp)
    weights = load_file(tiny_dir / "model.safetensors")
    save_file({f"thinker.{k}": v for k, v in weights.items()}, comp / "model.safetensors", metadata={"format": "pt"})
    thinker = json.loads((tiny_dir / "config.json").read_text())
    Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False).save_pretrained(comp)
    a = ChatQwenOmni(model=str(tiny_dir), device="cpu", max_tokens=8).invoke("hello there")
    b = ChatQwenOmni(model=str(comp), device="cpu", max_tokens=8).invoke("hello there")
    assert a.content == b.content and a.usage_metadata == b.usage_metadata


def test_loads_once_across_threads(tiny_dir, monkeypatch):
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration as Thinker

    calls = []
    real = Thinker.from_pretrained.__func__

    def counting(cls, *a, **k):
        calls.append(1)
        return real(cls, *a, **k)

    monkeypatch.setattr(Thinker, "from_pretrained", classmethod(counting))
    # eager attention: a settings key no other test loads
    models = [
        ChatQwenOmni(model=str(tiny_dir), device="cpu", attn_implementation="eager", max_tokens=6) for _ in range(4)
    ]
    outs: list = [None] * 4
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        outs[i] = models[i].invoke("hello there").content

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(set(outs)) == 1 and outs[0] is not None


# ---- generation -------------------------------------------------------------------------------------


def test_usage_counts_prompt_and_media_tokens(chat, media):
    msgs = av_prompt(media)
    out = chat.invoke(msgs)
    proc = chat.processor
    inputs = proc.apply_chat_template(
        to_conversation(msgs),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    ids = inputs["input_ids"][0]
    assert out.usage_metadata["input_tokens"] == len(ids)
    meta = out.response_metadata
    assert (
        meta["image_tokens"] == int(inputs["image_grid_thw"][0].prod()) // 4 == int((ids == proc.image_token_id).sum())
    )
    assert meta["audio_tokens"] == int((ids == proc.audio_token_id).sum()) > 0
    n_out = out.usage_metadata["output_tokens"]
    assert 0 <= n_out <= 12
    assert out.usage_metadata["total_tokens"] == len(ids) + n_out
    assert meta["finish_reason"] == ("length" if n_out == 12 else "stop")
    assert meta["num_samples"] == 1 and meta["wall_s"] > 0 and meta["model_name"] == chat.model


def test_output_tokens_stop_at_eos(chat, monkeypatch):
    net = chat._loaded().model
    tok = chat.processor.tokenizer
    word = tok.encode("dog", add_special_tokens=False)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id

    def fake_generate(**kw):
        ids = kw["input_ids"]
        tail = torch.tensor([word + word + [eos, pad]]).repeat(ids.shape[0], 1)
        return torch.cat([ids, tail], dim=1)

    monkeypatch.setattr(net, "generate", fake_generate)
    out = chat.invoke("hello")
    assert out.content == "dogdog"
    assert out.usage_metadata["output_tokens"] == 2 * len(word)
    assert out.response_metadata["finish_reason"] == "stop"
    cut = chat.invoke("hello", stop=["gd"])
    assert cut.content == "do" and cut.response_metadata["finish_reason"] == "stop"


def test_n_samples_in_one_generate_call(chat, media, monkeypatch):
    net = chat._loaded().model
    counter = CountingGenerate(net)
    monkeypatch.setattr(net, "generate", counter)
    res = chat.generate([av_prompt(media)], n=3, temperature=0.8, top_p=0.9, seed=0)
    gens = res.generations[0]
    assert len(gens) == 3 and len(counter.calls) == 1
    # the prompt is prefilled once and its KV cache repeated: generate gets 3 rows and the cache
    assert counter.calls[0]["input_rows"] == 3 and counter.calls[0]["do_sample"] is True
    assert counter.calls[0]["cache_len"] == gens[0].message.usage_metadata["input_tokens"] - 1
    usage = [g.message.usage_metadata for g in gens]
    assert usage[0]["input_tokens"] > 0 and usage[1]["input_tokens"] == usage[2]["input_tokens"] == 0
    assert len({g.message.response_metadata["call_id"] for g in gens}) == 1
    assert all(g.message.response_metadata["num_samples"] == 3 for g in gens)
    again = chat.generate([av_prompt(media)], n=3, temperature=0.8, top_p=0.9, seed=0).generations[0]
    assert [g.text for g in again] == [g.text for g in gens]  # seeded sampling repeats

    counter.calls.clear()
    greedy = chat.generate([av_prompt(media)], n=3).generations[0]
    assert len(counter.calls) == 1 and counter.calls[0]["do_sample"] is False
    assert len(greedy) == 3 and len({g.text for g in greedy}) == 1


def test_generate_many_equals_unbatched_greedy(chat, media, monkeypatch):
    prompts = [
        av_prompt(media, "Where is the sound?"),
        av_prompt(media, "Give the box of the object that makes this sound, as JSON please.", system=False),
        [HumanMessage("hello there")],
    ]
    single = [chat.invoke(p) for p in prompts]
    net = chat._loaded().model
    counter = CountingGenerate(net)
    monkeypatch.setattr(net, "generate", counter)
    batched = chat.generate_many(prompts)
    assert len(counter.calls) == 1
    assert [r.generations[0].message.content for r in batched] == [s.content for s in single]

    def counts(usage):
        return {k: v for k, v in usage.items() if k != "input_token_details"}

    assert [counts(r.generations[0].message.usage_metadata) for r in batched] == [
        counts(s.usage_metadata) for s in single
    ]
    # the single calls left every prompt's KV in the prefix cache: each runs only its last token again
    usage = [r.generations[0].message.usage_metadata for r in batched]
    assert [u["input_token_details"]["cache_read"] for u in usage] == [u["input_tokens"] - 1 for u in usage]
    assert len({r.generations[0].message.response_metadata["call_id"] for r in batched}) == 3


def test_standard_kwargs_and_identity(chat):
    assert chat._llm_type == "qwen-omni" and chat.supports_multiple_samples
    assert chat._identifying_params["model"] == chat.model
    ls = chat._get_ls_params(temperature=0.4)
    assert ls["ls_model_name"] == chat.model and ls["ls_temperature"] == 0.4 and ls["ls_max_tokens"] == 12
    with pytest.raises(TypeError, match="unsupported generation kwargs"):
        chat.invoke("hi", tools=[])


# ---- CLI --------------------------------------------------------------------------------------------


def test_cli_tiny(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(model_app, ["tiny", str(tmp_path / "ck"), "--seed", "3"])
    assert ok.exit_code == 0 and str(tmp_path / "ck") in ok.stdout
    assert (tmp_path / "ck" / "model.safetensors").is_file()
    busy = runner.invoke(model_app, ["tiny", str(tmp_path / "ck")])
    assert busy.exit_code == 2 and "not empty" in busy.stderr and "Traceback" not in busy.output
    (tmp_path / "file").write_text("x")
    afile = runner.invoke(model_app, ["tiny", str(tmp_path / "file")])
    assert afile.exit_code == 2 and "not a directory" in afile.stderr
    forced = runner.invoke(model_app, ["tiny", str(tmp_path / "ck"), "--force"])
    assert forced.exit_code == 0


def test_an_uncached_hub_model_offline_fails_at_once(monkeypatch):
    import socket
    import time

    from gar_agent.models import qwen_omni

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.perf_counter()
    with pytest.raises(BackendError, match=r"not in the local Hugging Face cache .* cannot be reached \(offline\)"):
        qwen_omni._read_config("someone/not-a-cached-model")
    assert time.perf_counter() - start < 5  # no retries against an unreachable hub
