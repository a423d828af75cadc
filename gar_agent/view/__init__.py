"""`gar view`: a read-only local web viewer over traces, single runs and `gar eval` folders.

- `safety`: what may be read (only files under the served folder, plus a run's recorded inputs
  verified by hash);
- `index`: the served folder: its runs and evaluations listed and filtered, parsed traces cached;
- `documents`: the one place that turns traces, results and sample files into the plain JSON
  documents the page shows (run, diff, list rows, evaluation statistics);
- `graph_svg`: the topology drawn as SVG with the path a run took;
- `media`: frames, thumbnails, audio and waveform peaks of a run;
- `server`: the Starlette app; `export`: one self-contained HTML file per run; `cli`: `gar view`.
"""
