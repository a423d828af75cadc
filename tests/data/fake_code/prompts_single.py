"""Stand-in prompt builders with the released code's names and signatures, in our own words."""


def build_prompt_locate():
    """Box call."""
    return """
Box the thing that sounds. Reply as {"bbox": [x1, y1, x2, y2], "description": "..."} costing $5.
"""


def build_prompt_audio_only():
    return """
Name the sound: {"audio_class": "<name>", "audio_confidence_score": 0.0}
"""


def build_prompt_analysis_anchor_voting(prev_bbox, audio_class, audio_conf_score, W, H):
    """Votes."""
    try:
        conf_text = f"{float(audio_conf_score):.3f}"
    except Exception:
        conf_text = "0.000"

    return f"""
Box {prev_bbox} in a {W}x{H} frame; sound "{audio_class}" at {conf_text}.
Reply {{"av_consistency": <float>, "keep": <bool>, "note": "{{nested}} 'quotes'"}}
"""


def build_prompt_refine(prev_bbox, audio_class, W, H, analysis=None, max_delta_px=12):
    analysis = analysis or {}
    return f"""
Refine {prev_bbox} ("{audio_class}") within [0,{W - 1}]x[0,{H - 1}], size {W}x{H}.
av={analysis.get("av_consistency", 0.0)} tags={analysis.get("role_tags", [])}
anchors={analysis.get("anchor_votes", [])} keep={analysis.get("keep", False)} step<={max_delta_px}
Reply {{"bbox": [x1, y1, x2, y2], "changed": true, "ops": null}}
"""
