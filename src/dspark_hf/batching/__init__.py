"""Batched and continuous-batching DSpark on transformers' continuous-batching engine.

Entry points (installed by ``import dspark_hf``, :mod:`.entry_points`):
``target.generate_batch(inputs, generation_config=gc, assistant_model=draft)``,
``target.init_continuous_batching(..., assistant_model=draft)`` (requests added while others run) and
``target.generate(ids, attention_mask=mask, assistant_model=draft)`` with a left-padded batch of
``R > 1`` sequences. Every step drafts for each decoding request, verifies every request's
``[last token, d_1 .. d_L]`` (and whatever prefill the scheduler admits) in one packed target forward,
accepts per request and rewinds each request's paged cache to its accepted length.

Modules, each with one job:

- :mod:`.versions`: the transformers releases this engine was tested on; others refused in one line;
- :mod:`.refusals`: what a speculative batch cannot serve (DeepSeek-V4 and EAGLE-3 drafts, ...);
- :mod:`.request_state`: per-request drafting state (draft context cache, features not yet consumed, pending block, telemetry);
- :mod:`.speculation`: the engine's shared set-up (draft, policy, logits processors, feature hooks, cost curve, telemetry);
- :mod:`.batched_drafting`: one draft forward for every decoding request over their ragged draft contexts;
- :mod:`.padded_cache`: per-request draft caches right-aligned in one padded cache, and each request's rows cut back out;
- :mod:`.batched_eagle3`: EAGLE-3 drafts: per-request extends, then the test-time-training chains batched over the requests;
- :mod:`.packed_rows`: which rows of the packed forward belong to which request and which logits to keep;
- :mod:`.acceptance`: per-request verification (greedy matching, speculative sampling) on the packed forward's logits;
- :mod:`.planning`: verification lengths for the whole batch (per-request policies, Algorithm 1 over the batch);
- :mod:`.packed_profile`: the packed forward's cost curves (``dspark profile --packed``);
- :mod:`.paged_rewind`: rewinding a request in the paged cache, releasing the pages of rejected positions;
- :mod:`.sliding_ring`: sliding-window layers' rings one draft block longer than the window (rejected tokens never overwrite keys still read);
- :mod:`.telemetry`: per-step and per-request records;
- :mod:`.processor`: the batch processor subclass (draft, packed verify, accept);
- :mod:`.manager`: the manager subclass that builds it;
- :mod:`.padded`: ``generate()`` with a left-padded batch routed to the engine;
- :mod:`.entry_points`: the wrappers of ``init_continuous_batching`` / ``generate_batch`` / ``generate``.

Details and measured figures: ``docs/batching.md``.
"""
