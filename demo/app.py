"""The DSpark demo as a Gradio app file: ``python demo/app.py`` (or ``gradio demo/app.py`` for reload
while editing, or as a Hugging Face Space's app.py). Same page as ``dspark demo``, with its defaults:
the embedded SmolLM2-135M-Instruct target and the shipped draft (an untrained one when none ships).

The page itself lives in the package (:mod:`dspark_hf.demo.app`), so that ``dspark demo``
works from an installed wheel too; this file only builds and serves it.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import dspark_hf  # noqa: E402,F401  (installs the generation hook)
from dspark_hf.demo.app import build_demo, launch_demo  # noqa: E402

demo = build_demo()

if __name__ == "__main__":
    launch_demo(demo, host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
