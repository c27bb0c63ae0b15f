"""The project's code books (firmware/codebooks/*.json) as core ``CodeBook`` objects."""

import json
from importlib import resources

from .errors import ConfigError


def load_codebooks(paths=None):
    """{standard: CodeBook} from ``paths`` (files) or from the books shipped with gridlink."""
    from gridlink.firmware.core.codebook import BOOK_FORMAT, CodeBook, CodeError

    if paths is None:
        folder = resources.files("gridlink.firmware") / "codebooks"
        entries = sorted((e for e in folder.iterdir() if e.name.endswith(".json")),
                         key=lambda e: e.name)
    else:
        from pathlib import Path

        entries = [Path(p) for p in paths]
    books = {}
    for entry in entries:
        try:
            doc = json.loads(entry.read_text(encoding="utf-8"))
            if isinstance(doc, dict) and doc.get("format") == BOOK_FORMAT:
                book = CodeBook(doc)
                books[book.standard] = book
            elif paths is not None:
                raise ConfigError(f"code book {entry}: format is not {BOOK_FORMAT}")
        except (OSError, ValueError, CodeError) as exc:
            raise ConfigError(f"code book {entry}: {exc}") from exc
    return books


def load_grid_map(path):
    """A core ``GridMap`` held in memory (the gateway locates every report on it)."""
    from pathlib import Path

    from gridlink.firmware.core.gridmap import GridMap, GridMapError

    try:
        return GridMap(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"grid map {path}: {exc}") from exc
    except GridMapError as exc:
        raise ConfigError(f"grid map {path}: {exc}") from exc
