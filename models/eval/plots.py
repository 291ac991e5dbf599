"""Figure output shared by the evaluations (matplotlib is imported by the callers, lazily)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def save_figure(fig: Any, path: Path, plt: Any, *, dpi: int = 100) -> Path:
    """tight_layout, write ``path`` (folders made), close the figure, log it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path
