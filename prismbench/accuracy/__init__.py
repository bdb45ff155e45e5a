"""Synthetic probing tasks (PRISM paper, Table 4): generators, tiny models, trainer, presets, figures.

Modules: `tasks` (seeded generators, disjoint train/test streams), `mixers` (mixer registry),
`model` (TinyLM), `train` (`run_one`), `presets` (`paper-caption`, `authors-code`, `ci`),
`report` (results document, README table), `plots` (heatmap, accuracy vs width).
The command is `prismbench accuracy` (`prismbench.accuracy_cli.accuracy`).
"""
