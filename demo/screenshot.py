"""Take the README's screenshot of the demo (docs/demo.png) in Debian's chromium, headless.

    python demo/screenshot.py [--out docs/demo.png] [--prompt "..."] [--max-new-tokens 48] [--policy whole]

Serves the demo exactly as ``dspark demo`` does (default target and draft) on a free 127.0.0.1 port,
asks one question with the plain-decoding comparison on, waits for the answer, saves a full-page
screenshot and shuts everything down.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "demo.png"))
    parser.add_argument("--prompt", default="Explain in three sentences why the sky is blue.")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--policy", default="whole", help="one of the page's policy choices, e.g. whole, threshold")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import torch
    from playwright.sync_api import sync_playwright

    import dspark_hf  # noqa: F401
    from dspark_hf.demo.app import POLICIES, build_demo, launch_demo

    torch.set_num_threads(args.threads)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_demo()
    _, url, _ = launch_demo(demo, port=port, block=False, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(600_000)
            page.goto(url)
            page.locator("#dspark-prompt textarea").fill(args.prompt)
            box = page.locator("#dspark-max-tokens input[type=number]")
            box.fill(str(args.max_new_tokens))
            box.press("Enter")
            if args.policy != "whole":
                label = dict((v, k) for k, v in POLICIES)[args.policy]
                page.locator("#dspark-policy input").click()
                page.get_by_role("option", name=label).click()
            page.locator("#dspark-compare input").check()
            page.locator("#dspark-generate").click()
            page.wait_for_selector("#dspark-status-line[data-state=done]")
            page.mouse.move(0, 0)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
