"""Reports of finished runs: heatmaps (:mod:`.heatmap`), Perfetto traces (:mod:`.trace`) and a
terminal progress bar (:mod:`.progress`). Modules import matplotlib only when they draw."""
