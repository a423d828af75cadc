"""Stand-in model helpers (signatures only matter to the importer; never run)."""


def run_chat(
    model,
    processor,
    contents,
    system_text="Generic helper.",
    do_sample=False,
    temperature=0.0,
    top_p=1.0,
    max_new_tokens=256,
):
    raise NotImplementedError


def run_anchor_voting_multi(model, processor, image_path, audio_path, prompt_builder, n=7):
    outs = []
    for _ in range(n):
        outs.append(
            run_chat(
                model,
                processor,
                contents=[{"type": "text", "text": prompt_builder()}],
                system_text="Vote system text (B.5).",
                do_sample=True,
                temperature=0.4,
                top_p=0.9,
                max_new_tokens=256,
            )
        )
    return outs
