"""Checkpoint files, below any model class: which format a config.json is (:mod:`.formats`), checks of
a local folder and its safetensors files (:mod:`.files`), and the one place that fetches files from the
Hugging Face Hub (:mod:`.fetch`, with its one-line errors in :mod:`.fetch_errors`). Model code reads
checkpoints through these modules, as transformers' ``from_pretrained`` goes through its
``utils.hub``; nothing here builds a model or knows a model class."""
