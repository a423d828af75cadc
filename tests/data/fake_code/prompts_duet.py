"""Stand-in duet prompt builders, our own words."""


def build_prompt_locate_duet(dataset_name="SOME DUET"):
    return (
        "Two boxes please.\n"
        f"SET ({dataset_name}): give both.\n"
        '{"bboxes": [[x1, y1, x2, y2], [x1, y1, x2, y2]], "descriptions": ["a", "b"]}'
    )


def build_prompt_audio_duet(dataset_name="SOME DUET"):
    return f'Two sounds ({dataset_name}): {{"audio_classes": ["a", "b"], "audio_confidence_scores": [c1, c2]}}'


def build_prompt_analysis_anchor_voting(prev_bbox, audio_class, audio_conf_score, W, H):
    try:
        c = f"{float(audio_conf_score):.3f}"
    except Exception:
        c = "0.000"
    return f"""
Duet vote: {prev_bbox} [{W}x{H}] "{audio_class}" {c} -- reply in JSON.
""".strip()


def build_prompt_analysis_anchor_voting_no_conf(prev_bbox, audio_class, W, H):
    return f"""
Duet vote without confidence: {prev_bbox} [{W}x{H}] "{audio_class}" -- JSON.
""".strip()


def build_prompt_refine(prev_bbox, audio_class, W, H, analysis=None, max_delta_px=12):
    analysis = analysis or {}
    return f"""
Duet refine {prev_bbox} "{audio_class}" {W}x{H} <= {W - 1},{H - 1}
{analysis.get("av_consistency", 0.0)} {analysis.get("role_tags", [])} {analysis.get("anchor_votes", [])} {analysis.get("keep", False)} +-{max_delta_px} px.
""".strip()
