"""Videos: frame and audio window at a time, `gar run VIDEO`, `gar track` (tracker, video, timeline, resume).

Every video is made by tests/media_files.py: 160x120 frames with a red square moving right 3 px a frame
over a gradient, and a mono tone that changes from 440 Hz to 880 Hz half-way, encoded with PyAV.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import write_script
from media_files import BOX0, FPS, RATE, H, W, claim_duration, draw, leaving, make_video, script_for, square

from gar_agent.cli.app import main
from gar_agent.models.scripted import ScriptedChatModel
from gar_agent.trace.store import read_trace
from gar_agent.video.analyse import iou
from gar_agent.video.decode import VideoError, audio_span, audio_window, frame_at, probe
from gar_agent.video.follow import Anchor, Follower
from gar_agent.video.track import analysis_times


def peak_hz(wave: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.fft.rfftfreq(wave.size, 1 / rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    out = {
        "plain": make_video(d / "square.mp4"),
        "mute": make_video(d / "mute.mp4", audio=False),
        "short": make_video(d / "short.mkv", seconds=0.3),
        "rotated": make_video(d / "rotated.mov", rotate=90),
        "late": make_video(d / "late.mkv", silent_until=1.2),
        "leaving": make_video(d / "leaving.mp4", scene=leaving),
        "liar": claim_duration(make_video(d / "liar.mkv", seconds=0.3), 100_000),  # 3 frames
    }
    data = out["plain"].read_bytes()
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov atom (the index) is lost
    out["corrupt"], out["truncated"] = d / "corrupt.mp4", d / "truncated.mp4"
    return out


def gar(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# --- decoding -------------------------------------------------------------------------------


def test_probe_reads_the_facts(videos):
    info = probe(videos["plain"])
    assert (info.width, info.height, info.fps, info.rotation) == (W, H, FPS, 0)
    assert info.duration_s == pytest.approx(3.0, abs=0.01)
    assert info.audio_rate == RATE and info.audio_channels == 1
    assert len(info.sha256) == 64


def test_frame_at_is_the_frame_shown_at_that_time(videos):
    info = probe(videos["plain"])
    for at, index in [(0.0, 0), (1.0, 10), (1.26, 12), (2.95, 29)]:
        rgb, t = frame_at(info, at)
        assert t == pytest.approx(index / FPS)
        x1, y1, x2, y2 = square(index)
        assert rgb[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].mean(axis=(0, 1)) == pytest.approx([255, 0, 0], abs=12)
        assert np.abs(rgb.astype(int) - draw(index)).mean() < 4  # the whole frame, up to compression


def test_audio_window_holds_the_tone_of_its_time(videos):
    info = probe(videos["plain"])
    assert audio_span(info, 0.75, 0.5) == (0.5, 1.0)
    assert audio_span(info, 0.0, 1.0) == (0.0, 1.0)  # shifted to stay in the video, not cut
    assert audio_span(info, 3.0, 1.0) == pytest.approx((2.0, 3.0))
    assert audio_span(info, 1.5, 10.0) == (0.0, 3.0)  # a short video gives all of it
    before, after = audio_window(info, 0.5, 1.0), audio_window(info, 2.0, 2.5)
    assert before.size == pytest.approx(0.5 * RATE, abs=2)
    assert peak_hz(before) == pytest.approx(440, abs=4)
    assert peak_hz(after) == pytest.approx(880, abs=4)
    # the switch at 1.5 s lies where the window says: the first half 440 Hz, the second 880 Hz
    around = audio_window(info, 1.0, 2.0)
    assert peak_hz(around[: RATE // 2 - 400]) == pytest.approx(440, abs=4)
    assert peak_hz(around[RATE // 2 + 400 :]) == pytest.approx(880, abs=4)


def test_rotation_metadata_is_applied(videos):
    info = probe(videos["rotated"])
    assert (info.width, info.height, info.rotation) == (H, W, 90)
    rgb, _ = frame_at(info, 0.0)
    assert rgb.shape == (W, H, 3)
    assert np.abs(rgb.astype(int) - np.rot90(draw(0))).mean() < 4  # turned counter-clockwise, as displayed


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mute", "has no audio track"),
        ("corrupt", "could not be opened"),
        ("truncated", "could not be opened"),
    ],
)
def test_unusable_videos_are_refused(videos, name, message):
    with pytest.raises(VideoError, match=message):
        probe(videos[name])


def test_a_time_outside_the_video_is_refused(videos):
    with pytest.raises(VideoError, match=r"--at 3.5 s is outside video .* \(0 to 3.000 s\)"):
        frame_at(probe(videos["plain"]), 3.5)


# --- gar run VIDEO -----------------------------------------------------------------------------


def test_run_video_records_it_and_replays(videos, tmp_path, capsys):
    script, traces = script_for(tmp_path), tmp_path / "traces"
    common = ["--backend", f"scripted:{script}", "--trace-dir", traces, "--checkpoints", "memory", "--n-votes", 2]
    code, out, err = gar(
        capsys, "run", videos["plain"], "--at", 1.0, "--window", 1, "--out", tmp_path / "o", *common, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["image"]["width"] == W and doc["audio"]["duration_s"] == pytest.approx(1.0)
    assert [s["box"] for s in doc["sources"]] == [BOX0]
    (trace_file,) = traces.glob("*/trace.json")
    trace = read_trace(trace_file)
    video = trace.inputs["video"]
    assert video.path == str(videos["plain"]) and video.sha256 == probe(videos["plain"]).sha256
    assert (video.at_s, video.frame_time_s, video.window_s, video.fps) == (1.0, 1.0, (0.5, 1.5), 10.0)
    assert video.duration_s == pytest.approx(3.0, abs=0.01)
    assert set(trace.embedded_media) == {"image", "audio"}  # the frame and window, not the video
    for f in (tmp_path / "o").glob("*"):  # --out is gone: replay uses the copies beside the trace
        f.unlink()
    code, _, err = gar(capsys, "replay", trace_file, "--trace-dir", traces, "--out", tmp_path / "r")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "result.json").read_text())["sources"][0]["box"] == BOX0


def test_run_video_defaults_to_the_middle(videos, tmp_path, capsys):
    script = script_for(tmp_path)
    args = ["--backend", f"scripted:{script}", "--trace-dir", tmp_path / "t", "--checkpoints", "memory"]
    code, _, err = gar(capsys, "run", videos["rotated"], "--out", tmp_path / "o", *args)
    assert code == 0, err
    video = read_trace(next((tmp_path / "t").glob("*/trace.json"))).inputs["video"]
    assert (video.at_s, video.window_s, video.rotation, video.width) == (1.5, (0.0, 3.0), 90, H)
    code, _, err = gar(capsys, "run", videos["short"], "--out", tmp_path / "s", *args)
    assert code == 0, err
    assert "the audio window is all of it" in err


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("mute", [], "has no audio track"),
        ("corrupt", [], "could not be opened"),
        ("truncated", [], "could not be opened"),
        ("plain", ["--at", "4"], "--at 4 s is outside video"),
        ("plain", ["--at", "-1"], "--at -1 s is outside video"),
        ("missing", [], "does not exist"),
    ],
)
def test_run_video_bad_input_is_one_line(videos, tmp_path, capsys, name, extra, message):
    path = videos.get(name, tmp_path / "missing.mp4")
    code, out, err = gar(
        capsys, "run", path, *extra, "--backend", f"scripted:{script_for(tmp_path)}", "--out", tmp_path
    )
    assert code == 2
    assert err.startswith("gar: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_run_keeps_image_audio_and_refuses_mixtures(videos, example, tmp_path, capsys):
    image, audio, _ = example
    script = script_for(tmp_path, box=[38, 70, 128, 215])
    common = ["--backend", f"scripted:{script}", "--trace-dir", tmp_path / "t", "--checkpoints", "memory"]
    assert gar(capsys, "run", image, audio, "--out", tmp_path / "o", *common)[0] == 0
    code, _, err = gar(capsys, "run", image, "--out", tmp_path / "o", *common)
    assert code == 2 and "AUDIO is missing" in err
    code, _, err = gar(capsys, "run", videos["plain"], audio, "--out", tmp_path / "o", *common)
    assert code == 2 and "give it alone" in err
    code, _, err = gar(capsys, "run", image, audio, "--at", 1, "--out", tmp_path / "o", *common)
    assert code == 2 and "--at and --window" in err


# --- following boxes ---------------------------------------------------------------------------


def test_tracker_follows_a_moving_square():
    follower = Follower(W, H)
    first = follower.anchor(draw(0), Anchor(0.0, [{"source": 0, "audio_class": "beep", "box": BOX0}]), None)
    assert first[0]["origin"] == "analysis"
    for i in range(1, 30):
        (box,) = follower.step(draw(i), i / FPS)
        assert box["origin"] == "tracker"
        assert iou(box["box"], square(i)) > 0.4, (i, box["box"], square(i))
    assert box["box"][0] - BOX0[0] > 60  # it moved with the square (87 px), not stayed


@pytest.mark.parametrize("tracker", ["template", "mil"])
def test_lost_object_is_interpolated_to_the_next_analysis(tracker):
    follower = Follower(W, H, tracker)
    item = {"source": 0, "audio_class": "beep"}
    goal = [100, 40, 124, 64]
    follower.anchor(draw(0), Anchor(0.0, [{**item, "box": BOX0}]), Anchor(1.0, [{**item, "box": goal}]))
    origins, boxes = [], []
    for i in range(1, 10):
        (box,) = follower.step(draw(i, visible=i < 3), i / FPS)
        origins.append(box["origin"])
        boxes.append(box["box"])
    assert origins[:2] == ["tracker", "tracker"]
    assert set(origins[2:]) == {"interpolation"}  # the square vanished at frame 3
    lefts = [b[0] for b in boxes[2:]]
    assert lefts == sorted(lefts) and lefts[-1] < goal[0]  # moving toward the next analysed box
    # linear in time from the last tracked box to the goal
    last, t_last = boxes[1], 0.2
    expect = round(last[0] + (goal[0] - last[0]) * (0.9 - t_last) / (1.0 - t_last))
    assert boxes[-1][0] == expect
    # with no next analysis a lost box stays where it was
    follower.anchor(draw(0), Anchor(0.0, [{**item, "box": BOX0}]), None)
    (box,) = follower.step(draw(1, visible=False), 0.1)
    assert box["origin"] == "held" and box["box"] == BOX0


@pytest.mark.parametrize("tracker", ["template", "mil"])
def test_a_box_on_plain_background_is_lost_not_tracked_to_the_corner(tracker):
    follower = Follower(W, H, tracker)
    item = {"source": 0, "audio_class": "beep"}
    plain = [30, 30, 90, 90]  # the model boxed plain background: nothing there to follow
    follower.anchor(leaving(20), Anchor(0.0, [{**item, "box": plain}]), None)
    for i in range(21, 30):
        (box,) = follower.step(leaving(i), i / FPS)
        assert box == {**item, "box": plain, "origin": "held"}  # was "tracker" at [0, 0, 60, 60]
    # the square leaves; from then on its box is lost (held), never tracked over the plain background
    follower.anchor(leaving(0), Anchor(0.0, [{**item, "box": BOX0}]), None)
    origins = []
    for i in range(1, 20):
        (box,) = follower.step(leaving(i), i / FPS)
        origins.append(box["origin"])
        assert box["box"][:2] != [0, 0]
        if box["origin"] == "tracker":
            assert i < 12 and iou(box["box"], square(i)) > 0.3, (i, box)
    assert set(origins[11:]) == {"held"}


def test_analysis_times():
    assert analysis_times(3.0, 1.0) == [0.0, 1.0, 2.0]
    assert analysis_times(3.05, 1.0) == [0.0, 1.0, 2.0, 3.0]
    assert analysis_times(0.3, 2.0) == [0.0]


# --- gar track ---------------------------------------------------------------------------------


def decode_all(path: Path) -> tuple[list[float], np.ndarray, int, float]:
    with av.open(str(path)) as c:
        times = [f.time for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        wave = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)])
        duration = float(c.streams.video[0].duration * c.streams.video[0].time_base)
    return times, wave, rate, duration


def test_track_writes_video_timeline_and_traces(videos, tmp_path, capsys):
    out = tmp_path / "track"
    args = ["track", videos["plain"], "--every", 1, "--window", 1, "--out", out, "--n-votes", 2, "--no-reuse"]
    code, stdout, err = gar(capsys, *args, "--backend", f"scripted:{script_for(tmp_path)}")
    assert code == 0, err
    assert "3 times: 3 analysed, 0 reused, 0 failed" in stdout
    # the annotated video: every frame, the same timing, the original sound
    times, wave, rate, duration = decode_all(out / "square.tracked.mp4")
    assert len(times) == 30 and times[:2] == [0.0, 0.1]
    assert duration == pytest.approx(3.0, abs=0.01)
    assert rate == RATE and wave.size == pytest.approx(3 * RATE, rel=0.05)
    assert peak_hz(wave[RATE // 4 : RATE]) == pytest.approx(440, abs=4)
    assert peak_hz(wave[2 * RATE : 2 * RATE + 3 * RATE // 4]) == pytest.approx(880, abs=4)
    with av.open(str(out / "square.tracked.mp4")) as c:
        frame0 = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(frame0.astype(int) - draw(0)).max() > 100  # boxes are drawn on it
    # the timeline
    timeline = json.loads((out / "timeline.json").read_text())
    entries = timeline["times"]
    assert [e["t"] for e in entries] == [0.0, 1.0, 2.0]
    assert [e["window_s"] for e in entries] == [[0.0, 1.0], [0.5, 1.5], [1.5, 2.5]]
    for e in entries:
        assert e["status"] == "analysed"
        (src,) = e["sources"]
        assert src["audio_class"] == "beep" and src["box"] == BOX0
        assert src["gate"]["refine"] is False and src["gate"]["av_consistency"] == 0.8
        trace = read_trace(e["trace"])  # one trace per analysed time
        assert trace.inputs["video"].at_s == e["t"] and trace.run_id == e["run_id"]
        # the command's run spec, built once, in every time's trace
        assert trace.spec.command == "track" and trace.spec.options == {
            "every": 1.0, "window": 1.0, "tracker": "template", "reuse": False,
        }  # fmt: skip
        assert trace.spec.backend.name.startswith("scripted:") and trace.spec.settings.n_votes == 2
    frames = timeline["frames"]
    assert len(frames) == 30 and [f["index"] for f in frames] == list(range(30))
    origins = [f["boxes"][0]["origin"] for f in frames]
    assert [i for i, o in enumerate(origins) if o == "analysis"] == [0, 10, 20]
    assert set(origins[:20]) <= {"analysis", "tracker", "interpolation"}
    # the script boxes BOX0 at every time; from 1 s on the square has left it, and a box on the plain
    # gradient has nothing to follow: lost at once, held after the last analysed time
    assert set(origins[21:]) == {"held"}
    assert sum(timeline["summary"]["boxes_by_origin"].values()) == 30


def test_track_reuse_skips_analysis_when_generate_agrees(videos, tmp_path, capsys):
    script = script_for(tmp_path)
    common = ["--every", 1, "--window", 1, "--n-votes", 3, "--backend", f"scripted:{script}"]
    calls = {}
    for mode in ("--reuse", "--no-reuse"):
        code, _, err = gar(capsys, "track", videos["plain"], mode, "--out", tmp_path / mode, *common)
        assert code == 0, err
        entries = json.loads((tmp_path / mode / "timeline.json").read_text())["times"]
        calls[mode] = [e["usage"]["model_calls"] for e in entries]
        statuses = [e["status"] for e in entries]
        if mode == "--reuse":
            assert statuses == ["analysed", "reused", "reused"]
            assert [e.get("reused_from") for e in entries] == [None, 0.0, 0.0]
            assert entries[1]["sources"][0]["gate"] == entries[0]["sources"][0]["gate"]
        else:
            assert statuses == ["analysed"] * 3
    assert calls["--no-reuse"] == [3, 3, 3]  # audio, boxes, one Analyze call of 3 votes
    assert calls["--reuse"] == [3, 2, 2]  # Generate's two calls only


class _Interrupting(ScriptedChatModel):
    """Ctrl-C while the second time is being analysed: SIGINT reaches the main thread, as a real one
    does, wherever the call itself runs (the run's event loop, or a worker thread of it)."""

    def _interrupt(self, run_manager) -> bool:
        meta = (run_manager.metadata if run_manager else None) or {}
        if meta.get("gar_stage") == "audio":
            self.script.setdefault("_audio_calls", 0)
            self.script["_audio_calls"] += 1
            if self.script["_audio_calls"] == 2:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return True
        return False

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if self._interrupt(run_manager):
            time.sleep(1)  # the call is still running when Ctrl-C arrives
        return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        if self._interrupt(run_manager):
            await asyncio.sleep(1)
        return ScriptedChatModel._generate(self, messages, stop, run_manager, **kwargs)  # not our _generate again


def test_track_resumes_after_an_interruption(videos, tmp_path, capsys, monkeypatch):
    script = script_for(tmp_path)
    out = tmp_path / "track"
    args = ["track", videos["plain"], "--every", 1, "--window", 1, "--out", out, "--n-votes", 2]
    args += ["--backend", f"scripted:{script}"]
    import gar_agent.cli.track_cmd as track_cmd

    with monkeypatch.context() as m:
        interrupting = _Interrupting.from_file(script)
        m.setattr(track_cmd, "resolve_backend", lambda *a, **k: interrupting)
        code, _, err = gar(capsys, *args)
    assert code == 130 and "run the same command again" in err
    assert [p.name for p in (out / "times").iterdir()] == ["t0000.000.json"]
    assert not (out / "timeline.json").exists()
    first = (out / "times" / "t0000.000.json").read_text()
    code, stdout, err = gar(capsys, *args)
    assert code == 0, err
    assert "(1 from an earlier run)" in stdout
    timeline = json.loads((out / "timeline.json").read_text())
    assert [e["t"] for e in timeline["times"]] == [0.0, 1.0, 2.0]
    assert (out / "times" / "t0000.000.json").read_text() == first  # not run again
    assert len(list((out / "traces").glob("*/trace.json"))) == 3
    # other settings on the same folder: refused, not mixed
    code, _, err = gar(capsys, *args[:-2], "--every", 0.5, "--backend", f"scripted:{script}")
    assert code == 2 and "other every_s" in err


def test_track_short_video_and_bad_input(videos, tmp_path, capsys):
    script = script_for(tmp_path, box=[10, 40, 34, 64])
    code, stdout, err = gar(
        capsys, "track", videos["short"], "--out", tmp_path / "s", "--backend", f"scripted:{script}"
    )
    assert code == 0, err
    timeline = json.loads((tmp_path / "s" / "timeline.json").read_text())
    assert [e["t"] for e in timeline["times"]] == [0.0] and len(timeline["frames"]) == 3
    assert len(decode_all(tmp_path / "s" / "short.tracked.mp4")[0]) == 3
    # a rotated video comes out upright, with no rotation left in the metadata
    code, _, err = gar(
        capsys, "track", videos["rotated"], "--every", 5, "--out", tmp_path / "r", "--backend", f"scripted:{script}"
    )
    assert code == 0, err
    with av.open(str(tmp_path / "r" / "rotated.tracked.mp4")) as c:
        first = next(c.decode(video=0))
        assert (first.width, first.height, first.rotation) == (H, W, 0)
        shown = first.to_ndarray(format="rgb24")
    assert np.abs(shown[80:, :].astype(int) - np.rot90(draw(0))[80:, :]).mean() < 4  # below the drawn box
    for name, message in [("mute", "no audio track"), ("corrupt", "could not be opened")]:
        code, _, err = gar(capsys, "track", videos[name], "--out", tmp_path / name, "--backend", f"scripted:{script}")
        assert code == 2 and err.startswith("gar: error: ") and message in err


def test_a_header_claiming_a_long_video_is_not_trusted(videos, tmp_path, capsys):
    with av.open(str(videos["liar"])) as c:  # what the header says
        assert c.duration / 1e6 == 100_000 and len(list(c.decode(video=0))) == 3
    assert probe(videos["liar"]).duration_s == pytest.approx(0.3)  # where its frames really end
    out = tmp_path / "liar"
    code, stdout, err = gar(capsys, "track", videos["liar"], "--every", 2, "--out", out,
                            "--backend", f"scripted:{script_for(tmp_path)}")  # fmt: skip
    assert code == 0, err
    assert [p.name for p in (out / "times").iterdir()] == ["t0000.000.json"]  # one time, not 50,000
    timeline = json.loads((out / "timeline.json").read_text())
    assert timeline["summary"]["times"] == 1 and len(timeline["frames"]) == 3
    with pytest.raises(VideoError, match=r"--at 50 s is outside video .* \(0 to 0\.300 s\)"):
        frame_at(probe(videos["liar"]), 50)


def test_a_scripted_track_moves_and_a_departed_object_is_lost_not_tracked(videos, tmp_path, capsys):
    # per-run answers: the model boxes the square where it is at 0 s and 1 s, and plain background at 2 s
    plain = [100, 20, 140, 60]
    script = write_script(
        tmp_path / "moving.json",
        audio=['{"audio_class": "beep", "audio_confidence_score": 0.9}'],
        generate=[{"bbox": square(0), "description": "a square"}],
        analyze=[{"av_consistency": 0.8, "keep": True, "role_tags": [], "anchor_votes": []}],
        refine=['{"changed": false}'],
        runs={
            "t0001.000": {"generate": [{"bbox": square(10), "description": "a square"}]},
            "t0002.000": {"generate": [{"bbox": plain, "description": "nothing"}]},
        },
    )
    out = tmp_path / "moving"
    args = ["track", videos["leaving"], "--every", 1, "--window", 1, "--out", out, "--n-votes", 2]
    code, _, err = gar(capsys, *args, "--backend", f"scripted:{script}")
    assert code == 0, err
    timeline = json.loads((out / "timeline.json").read_text())
    assert [e["status"] for e in timeline["times"]] == ["analysed"] * 3  # the boxes moved: nothing reused
    assert [e["sources"][0]["box"] for e in timeline["times"]] == [square(0), square(10), plain]
    boxes = [f["boxes"][0] for f in timeline["frames"]]
    origins = "".join(b["origin"][0] for b in boxes)  # a(nalysis) t(racker) i(nterpolation) h(eld)
    assert origins[:10] == "a" + "t" * 9 and origins[10] == origins[20] == "a"
    assert all(iou(b["box"], square(i)) > 0.4 for i, b in enumerate(boxes[:10]))
    # the square is gone from 1.2 s: interpolated toward the next analysed box, then held there
    assert set(origins[12:20]) == {"i"} and origins[21:] == "h" * 9
    assert all(b["box"] == plain for b in boxes[20:])  # never a jump to the corner
    assert timeline["summary"]["boxes_by_origin"]["held"] == 9


def test_track_failed_times_are_listed_and_retried(videos, tmp_path, capsys):
    out = tmp_path / "late"
    args = ["track", videos["late"], "--every", 1, "--window", 1, "--out", out, "--n-votes", 2]
    # boxed where the square is at 1 s, the first time that can be analysed
    code, stdout, err = gar(capsys, *args, "--backend", f"scripted:{script_for(tmp_path, square(10))}")
    assert code == 0, err
    timeline = json.loads((out / "timeline.json").read_text())
    first, *rest = timeline["times"]
    assert first["status"] == "failed" and "is silent from 0 to 1 s" in first["error"]
    assert "time 0 s failed" in err
    assert [e["status"] for e in rest] == ["analysed"] + ["reused"] * (len(rest) - 1)
    frames = timeline["frames"]
    assert len(frames) == 30
    assert all(f["boxes"] == [] for f in frames[:10])  # nothing found yet: nothing drawn
    assert [f["boxes"][0]["origin"] for f in frames[10:12]] == ["analysis", "tracker"]
    # a model that never gives a usable box: every time fails, exit 1, and the next run tries again
    bad = write_script(tmp_path / "bad.json", audio=['{"audio_class": "beep", "audio_confidence_score": 0.9}'],
                       generate=["no box here"])  # fmt: skip
    out = tmp_path / "bad"
    code, _, err = gar(capsys, "track", videos["plain"], "--every", 2, "--out", out, "--backend", f"scripted:{bad}")
    assert code == 1 and "no time could be analysed" in err
    statuses = [e["status"] for e in json.loads((out / "timeline.json").read_text())["times"]]
    assert statuses == ["failed", "failed"]
    code, stdout, _ = gar(capsys, "track", videos["plain"], "--every", 2, "--out", out, "--backend", f"scripted:{bad}")
    assert code == 1 and "(0 from an earlier run)" in stdout
