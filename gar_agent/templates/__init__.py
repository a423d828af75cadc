"""The project's own prompt set (protocol gar), one template per stage (`prompts/` links here).

A package only so that an installed wheel carries the templates; they are read as files.
"""
