"""The pieces behind ``dspark demo`` (the Gradio app), each usable and tested without a browser.

- :mod:`.provenance`: which tokens of a drafting round came from the draft and which from the target;
  a :class:`~.provenance.Transcript` of a run, step by step, with the text piece of every token.
- :mod:`.streaming`: one ``generate()`` call in a worker thread, observed round by round, stoppable.
- :mod:`.prompts`: the chat-templated prompt ids, with one clear message for an empty or over-long prompt.
- :mod:`.models`: which target and draft to load (the shipped default draft when this build has one)
  and a small cache of loaded pairs.
- :mod:`.render`: the answer as HTML token spans, the statistics cards, the per-step chart.
- :mod:`.handlers`: what the page's buttons do (generate and stream, stop, load models).
- :mod:`.app`: the Gradio Blocks page wiring it together, and how it is served.
"""
