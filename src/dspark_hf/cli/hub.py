"""``dspark hub``: the published drafts (``list``), fetching one into the Hub cache (``download``), and
writing the model card of a draft trained with this library (``card``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("hub", help="published drafts on the Hugging Face Hub: list, download, card")
    actions = parser.add_subparsers(dest="hub_command", required=True, metavar="ACTION")

    actions.add_parser("list", help="the published DSpark / DFlash / DeepSeek-V4 drafts with their targets")

    dl = actions.add_parser("download", help="fetch only the files a draft needs into the Hub cache")
    dl.add_argument("repo_id")
    dl.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    dl.add_argument("--cache-dir", default=None, help="Hub cache folder (default: HF_HUB_CACHE)")
    dl.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`)")

    card = actions.add_parser("card", help="write README.md (model card) for a draft trained with dspark_hf")
    card.add_argument("folder", help="the draft folder (config.json + model.safetensors)")
    card.add_argument("--repo-id", required=True, help="the repo the card is for, owner/name")
    card.add_argument("--base-model", required=True, help="the target model id, e.g. Qwen/Qwen3-4B")
    card.add_argument("--figures", default=None,
                      help="JSON file: a list of {benchmark, tau, acceptance_rate?, speedup?, rounds?, source?}")
    card.add_argument("--license", default="apache-2.0")
    card.add_argument("-o", "--output", default=None, help="where to write (default: FOLDER/README.md)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.hub_command == "list":
        from dspark_hf.hub.registry import format_table

        print(format_table())
        return 0
    if args.hub_command == "download":
        from dspark_hf.hub.download import resolve_draft

        resolved = resolve_draft(args.repo_id, revision=args.revision, cache_dir=args.cache_dir, token=args.token)
        print(f"{resolved.repo_id} @ {resolved.commit} ({resolved.kind}): {', '.join(resolved.files)}")
        print(resolved.folder)
        return 0
    if args.hub_command == "card":
        from dspark_hf.checkpoints.fetch import read_config_dict
        from dspark_hf.checkpoints.files import check_local_folder
        from dspark_hf.hub.cards import render_draft_card
        from dspark_hf.models.dspark.released_format import dspark_config_from_dict as draft_config_from_dict

        folder = Path(args.folder)
        check_local_folder(folder)
        config = draft_config_from_dict(read_config_dict(folder), f"{folder}/config.json")
        figures = json.loads(Path(args.figures).read_text()) if args.figures else None
        text = render_draft_card(config, repo_id=args.repo_id, base_model=args.base_model, figures=figures, license=args.license)
        output = Path(args.output) if args.output else folder / "README.md"
        output.write_text(text)
        print(output)
        return 0
    raise AssertionError(args.hub_command)
