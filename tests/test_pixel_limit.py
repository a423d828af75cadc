"""Decompression bombs: a frame's size is read from its header and checked before anything is decoded.

A 20000x20000 PNG of zeros is 50 KB on disk; OpenCV decoded it into 1.2 GB (2.5 GB peak, 19 s)
before PIL's limit was ever asked, and 40000x40000 gave a cv2.error traceback (issue 18.3).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from media_files import bomb_png

from gar_agent.cli.app import main
from gar_agent.media import DEFAULT_MAX_PIXELS, MediaError, image_size, load_image, pixel_limit
from gar_agent.video.decode import VideoError, probe

ROOT = Path(__file__).resolve().parents[1]


PROBE = """
import sys, time
from gar_agent.media import MediaError, load_image
start = time.perf_counter()
try:
    load_image(sys.argv[1])
    message = "decoded"
except MediaError as e:
    message = str(e)
print(time.perf_counter() - start)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would count the pytest worker that forked us
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) // 1024)  # MB
print(message)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("side", [20000, 40000])
def test_a_bomb_frame_is_refused_from_its_header_in_little_memory_and_time(tmp_path, side):
    path = bomb_png(tmp_path / "bomb.png", side, side)
    assert path.stat().st_size < 1_000_000
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, cwd=ROOT)
    seconds, rss_mb, message = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stderr
    assert message == (
        f"image file {path} is {side}x{side} pixels ({side * side // 1_000_000} MP), over the limit of 50,000,000 "
        "pixels: give a smaller frame, or raise the limit with --max-pixels or GAR_MAX_PIXELS"
    )
    assert float(seconds) < 5.0 and int(rss_mb) < 300, (seconds, rss_mb)  # was 19 s and 2.5 GB (a busy machine: 5 s)


@pytest.mark.parametrize("ext, params", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                         (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
                                         (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".bmp", [])])  # fmt: skip
def test_the_header_size_is_the_decoded_size(tmp_path, ext, params):
    img = np.random.default_rng(0).integers(0, 255, (123, 457, 3), np.uint8)
    path = tmp_path / f"x{ext}"
    assert cv2.imwrite(str(path), img, params)
    assert tuple(image_size(path.read_bytes())) == (457, 123)


def test_the_limit_is_overridable_and_checked_before_decoding(example, tmp_path, monkeypatch):
    image = example[0]
    w, h = image_size(image.read_bytes())
    assert load_image(image)[0].shape[:2] == (h, w)  # the default takes a real frame
    with pixel_limit(w * h - 1), pytest.raises(MediaError, match=f"over the limit of {w * h - 1:,} pixels"):
        load_image(image)
    monkeypatch.setenv("GAR_MAX_PIXELS", str(w * h - 1))
    with pytest.raises(MediaError, match="over the limit"):
        load_image(image)
    with pixel_limit(w * h):  # the option wins over the variable
        load_image(image)
    big = bomb_png(tmp_path / "big.png", 8000, 7000)  # 56 MP: over the default, under a raised limit
    monkeypatch.setenv("GAR_MAX_PIXELS", "60_000_000")
    assert load_image(big)[3].width == 8000
    monkeypatch.delenv("GAR_MAX_PIXELS")
    with pytest.raises(MediaError, match=f"over the limit of {DEFAULT_MAX_PIXELS:,}"):
        load_image(big)


def _gar(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_gar_run_refuses_a_bomb_in_one_line(example, tmp_path, capsys, monkeypatch):
    image, audio, script = example
    bomb = bomb_png(tmp_path / "bomb.png", 20000, 20000)
    run = ["run", "--backend", f"scripted:{script}", "--out", tmp_path / "o", "--trace-dir", tmp_path / "t"]
    for args, why in [
        ([bomb, audio], f"gar: error: image file {bomb} is 20000x20000 pixels (400 MP), over the limit of 50,000,000"),
        ([image, audio, "--max-pixels", "1000"], f"gar: error: image file {image} is "),
    ]:
        code, err = _gar(capsys, *run[:1], *args, *run[1:])
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(why), err
        assert "--max-pixels or GAR_MAX_PIXELS" in err and "Traceback" not in err
    monkeypatch.setenv("GAR_MAX_PIXELS", "lots")
    code, err = _gar(capsys, "run", image, audio, *run[1:])
    assert (
        code == 2
        and err.strip()
        == "gar: error: GAR_MAX_PIXELS='lots' is not a pixel count: give a whole number such as 50000000"
    )


def test_a_video_is_checked_on_the_size_its_stream_declares(tmp_path):
    from media_files import H, W, make_video

    video = make_video(tmp_path / "v.mp4", seconds=0.5)
    assert probe(video).width == W
    with pixel_limit(W * H - 1), pytest.raises(VideoError, match=f"video {video} is {W}x{H} pixels"):
        probe(video)


def test_the_limit_is_restored_after_a_command(example, tmp_path, capsys):
    image, audio, script = example
    code, _ = _gar(capsys, "run", image, audio, "--backend", f"scripted:{script}", "--out", tmp_path / "o",
                   "--trace-dir", tmp_path / "t", "--max-pixels", "1000")  # fmt: skip
    assert code == 2
    assert load_image(image)[3].width > 0  # the next load in this process has the default limit again
